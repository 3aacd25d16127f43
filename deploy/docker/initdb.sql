-- One database per service (they share no tables).
CREATE DATABASE giao_orders;
CREATE DATABASE giao_dispatch;
CREATE DATABASE giao_tracking;
