-- One service's database and its two roles, for deploy/local/postgres.sh and the compose file's
-- PostgreSQL (deploy/docker/initdb.sh). Run by a superuser with psql, connected to another
-- database, with these variables (psql -v name=value):
--   db              the service's database                  (giao_orders)
--   owner           the role that owns it and migrates it    (giao_orders_owner)
--   app             the role the service runs as             (giao_orders)
--   owner_password, app_password
-- Neither role is a superuser or may create roles or databases. The database is the owner's,
-- and only the two roles may connect to it (CONNECT is revoked from PUBLIC): a service's role
-- reaches no other service's database. The runtime role gets DML on the owner's tables and
-- USAGE on its sequences through default privileges, so tables a later migration makes are
-- granted as they are made; it may not create, alter or drop anything (no CREATE on the
-- schema, no TEMPORARY on the database, not the owner of any table).
-- Idempotent: deploy/local/postgres.sh runs it at every start, also on a cluster made before
-- these roles existed (its tables, made by the superuser, become the owner's).
\set ON_ERROR_STOP on
SET client_min_messages = warning;  -- no "already exists, skipping" at every start
SELECT format('CREATE ROLE %I', :'owner') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'owner') \gexec
SELECT format('CREATE ROLE %I', :'app') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'app') \gexec
ALTER ROLE :"owner" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'owner_password';
ALTER ROLE :"app" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'app_password';
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'owner')
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
ALTER DATABASE :"db" OWNER TO :"owner";
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"db" TO :"app";

\connect :"db"
SET client_min_messages = warning;
ALTER SCHEMA public OWNER TO :"owner";
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO :"app";
-- Tables made before the roles existed (their identity sequences follow them).
SELECT format('ALTER TABLE public.%I OWNER TO %I', tablename, :'owner')
  FROM pg_tables WHERE schemaname = 'public' AND tableowner <> :'owner' \gexec
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"app";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO :"app";
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO :"app";
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO :"app";
-- Which migrations ran is the owner's to write: the table made here as shared/db.py's migrate
-- makes it (it then finds it there), the runtime role may only read it.
SET ROLE :"owner";
CREATE TABLE IF NOT EXISTS public.schema_migrations (
    name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());
RESET ROLE;
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON public.schema_migrations FROM :"app";
