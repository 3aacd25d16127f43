-- The ops console's views (store_admin.py) stay cheap however many couriers and jobs there are.
--
-- Online couriers in id order, for the console's pages of couriers (keyset on id, the area
-- filtered on lat/lng). Neither column changes with a location ping, so pings stay HOT
-- updates: an index on lat/lng would cost every ping an index insert.
CREATE INDEX couriers_online_by_id ON couriers (id) WHERE online;
-- Open jobs by status, oldest first: the console's pages of jobs (keyset on placed_at,
-- order_id), its counters per status and the oldest waiting order.
CREATE INDEX jobs_open_by_status ON jobs (status, placed_at, order_id)
    WHERE status IN ('waiting', 'offered', 'assigned', 'picked_up');
-- Jobs that expired, by when: "expired today" without reading the history of finished jobs.
CREATE INDEX jobs_expired_by_time ON jobs (updated_at) WHERE status = 'expired';
