-- TrackLayer -> Snowflake: one-time account setup (docs/snowflake-setup.md walks through it).
--
-- Run it as a role that may create databases, roles, users and network policies (ACCOUNTADMIN,
-- or SYSADMIN for the database/warehouse plus SECURITYADMIN for the role, user and policy), in
-- a worksheet or with `snowsql -f infra/sql/setup.sql`. Every statement can run again safely.
-- Before running, replace the two placeholders:
--   <paste>            the loader's RSA public key (the body of rsa_key.pub, without the
--                      -----BEGIN/END PUBLIC KEY----- lines), see docs/snowflake-setup.md
--   <egress-ip>/32     the public IP address(es) the loader's requests come from
-- The RAW_EVENTS and RAW_EVENTS_REJECTED tables are not created here: the functions create them
-- on their first load (CREATE TABLE needs the grant below), or run infra/sql/raw_events.sql and
-- infra/sql/raw_events_rejected.sql yourself.

------------------------------------------------------------------------------------------------
-- Database and schema
------------------------------------------------------------------------------------------------
CREATE DATABASE IF NOT EXISTS tracklayer;
USE DATABASE tracklayer;
CREATE SCHEMA IF NOT EXISTS events;

------------------------------------------------------------------------------------------------
-- Warehouse
------------------------------------------------------------------------------------------------
-- The grants below use the guide's analytics_wh. Recommended instead: a dedicated X-Small
-- loading warehouse that suspends a minute after the last load, so the loader's time is
-- metered on its own and never keeps the analysts' warehouse awake (Snowflake bills per
-- second with a 60 s minimum at each resume). To use it, uncomment this statement and replace
-- analytics_wh with tracklayer_load_wh in the GRANT USAGE ON WAREHOUSE, in DEFAULT_WAREHOUSE
-- and in the secret's `warehouse` field.
--
-- CREATE WAREHOUSE IF NOT EXISTS tracklayer_load_wh
--   WAREHOUSE_SIZE = 'XSMALL'
--   AUTO_SUSPEND = 60
--   AUTO_RESUME = TRUE
--   INITIALLY_SUSPENDED = TRUE
--   COMMENT = 'TrackLayer loader: SQL API inserts only';

------------------------------------------------------------------------------------------------
-- Writer role and grants (the guide's grants, plus INSERT/SELECT on tables that already exist)
------------------------------------------------------------------------------------------------
CREATE ROLE IF NOT EXISTS tracklayer_writer;
GRANT USAGE ON DATABASE tracklayer TO ROLE tracklayer_writer;
GRANT USAGE ON SCHEMA tracklayer.events TO ROLE tracklayer_writer;
GRANT CREATE TABLE ON SCHEMA tracklayer.events TO ROLE tracklayer_writer;
GRANT USAGE ON WAREHOUSE analytics_wh TO ROLE tracklayer_writer;
GRANT INSERT, SELECT ON FUTURE TABLES IN SCHEMA tracklayer.events
TO ROLE tracklayer_writer;
-- FUTURE grants only cover tables created from now on; these cover RAW_EVENTS and
-- RAW_EVENTS_REJECTED if someone created them before this script ran.
GRANT INSERT, SELECT ON ALL TABLES IN SCHEMA tracklayer.events
TO ROLE tracklayer_writer;
-- Snowpipe Streaming (LoadMethod=streaming) needs nothing more: a table's default pipe
-- (<TABLE>-STREAMING) takes INSERT on the table and USAGE on its database and schema, no pipe
-- grant and no warehouse (Snowflake's streaming access-control page; not yet confirmed against
-- a real account, and field reports for the Kafka connector also name SELECT, granted above).

-- Optional: lets the flush function suspend the warehouse right after a load instead of
-- paying for AUTO_SUSPEND's idle seconds (USAGE is enough to auto-resume, OPERATE is needed to
-- suspend). Only worth it on a dedicated loading warehouse: suspending a shared warehouse
-- would cut off other users' queries.
-- GRANT OPERATE ON WAREHOUSE tracklayer_load_wh TO ROLE tracklayer_writer;

------------------------------------------------------------------------------------------------
-- Service user: key-pair authentication only
------------------------------------------------------------------------------------------------
-- The guide's user had a PASSWORD. Not here: Snowflake blocks single-factor password sign-in
-- for non-human users, and a TYPE = SERVICE user cannot have a password at all. The SQL API,
-- which the loader uses, never accepted passwords anyway: it takes a key-pair JWT (this user's
-- RSA_PUBLIC_KEY) or a programmatic access token (PAT; for a service user Snowflake then
-- requires a network policy, see below). Key pair is preferred.
CREATE USER IF NOT EXISTS tracklayer_svc
TYPE = SERVICE
RSA_PUBLIC_KEY = '<paste>'
DEFAULT_ROLE = tracklayer_writer
DEFAULT_WAREHOUSE = analytics_wh
COMMENT = 'TrackLayer loader (Lambda functions, SQL API, key-pair auth)';
GRANT ROLE tracklayer_writer TO USER tracklayer_svc;

-- Check the key: RSA_PUBLIC_KEY_FP must equal the fingerprint of your private key
-- (SHA256:<base64>, see docs/snowflake-setup.md).
DESC USER tracklayer_svc;

------------------------------------------------------------------------------------------------
-- Network policy: only the loader's egress addresses may sign in as tracklayer_svc
------------------------------------------------------------------------------------------------
-- Lambda functions outside a VPC have no fixed address: run them in a VPC whose NAT gateway
-- has an Elastic IP, and list that address here (one /32 per NAT gateway). Applied to the user
-- only, so nobody else's sign-in is affected. Wrong addresses lock the loader out (error
-- 390422 "IP not allowed"); `ALTER USER tracklayer_svc UNSET NETWORK_POLICY;` undoes it.
-- (Snowflake's newer form puts the addresses in a network rule, CREATE NETWORK RULE ...
-- MODE = INGRESS TYPE = IPV4 VALUE_LIST = (...), referenced by ALLOWED_NETWORK_RULE_LIST.)
CREATE NETWORK POLICY IF NOT EXISTS tracklayer_loader
ALLOWED_IP_LIST = ('<egress-ip>/32')
COMMENT = 'TrackLayer loader egress (NAT gateway Elastic IPs)';
ALTER USER tracklayer_svc SET NETWORK_POLICY = tracklayer_loader;

------------------------------------------------------------------------------------------------
-- Key rotation without downtime (run by hand when rotating; kept commented)
------------------------------------------------------------------------------------------------
-- A user holds two keys, RSA_PUBLIC_KEY and RSA_PUBLIC_KEY_2; a JWT signed with either works.
-- 1. Make a new key pair (docs/snowflake-setup.md) and register its public key as the second:
--      ALTER USER tracklayer_svc SET RSA_PUBLIC_KEY_2 = '<paste new public key>';
-- 2. Check RSA_PUBLIC_KEY_2_FP against the new key's fingerprint:
--      DESC USER tracklayer_svc;
-- 3. Put the new private key (and passphrase, if any) into the loader's Secrets Manager
--    secret. Warm functions re-read the secret after TRACKLAYER_SECRET_TTL_SECONDS (300 s by
--    default) or at once after an authentication failure; wait at least that long.
-- 4. Remove the old key:
--      ALTER USER tracklayer_svc UNSET RSA_PUBLIC_KEY;
--    The next rotation fills RSA_PUBLIC_KEY again and unsets RSA_PUBLIC_KEY_2: the two slots
--    take turns.
