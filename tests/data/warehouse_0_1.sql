-- A warehouse as crm360 0.1 (before schema migrations) left it: its tables created by the
-- loads' and steps' own DDL, one day of small hand-written drops loaded (a CSV column the
-- contract does not know, quarantined records), a run recorded, an erasure request pending.
-- Made with pg_dump --inserts --no-owner --no-privileges; read by tests/test_migrations.py.
--
--



SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

--
-- Name: audit; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA audit;


--
-- Name: intermediate; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA intermediate;


--
-- Name: marts; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA marts;


--
-- Name: predictions; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA predictions;


--
-- Name: raw; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA raw;


--
-- Name: staging; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA staging;


--
-- Name: _is_valid(text, text); Type: FUNCTION; Schema: raw; Owner: -
--

CREATE FUNCTION raw._is_valid(value text, type_name text) RETURNS boolean
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    AS $$
begin
    execute format('select %L::%s', value, type_name);
    return true;
exception when others then
    return false;
end $$;


SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: erased_identifiers; Type: TABLE; Schema: audit; Owner: -
--

CREATE TABLE audit.erased_identifiers (
    identifier_type text NOT NULL,
    identifier_hash text NOT NULL,
    request_id bigint NOT NULL,
    erased_at timestamp with time zone DEFAULT now() NOT NULL
);


--
-- Name: erasure_requests; Type: TABLE; Schema: audit; Owner: -
--

CREATE TABLE audit.erasure_requests (
    request_id bigint NOT NULL,
    requested_at timestamp with time zone DEFAULT now() NOT NULL,
    requested_by text NOT NULL,
    identifier_type text NOT NULL,
    identifier_hash text NOT NULL,
    reason text,
    status text DEFAULT 'pending'::text NOT NULL,
    applied_at timestamp with time zone,
    applied_run_id text,
    customers_found integer,
    rows_deleted bigint
);


--
-- Name: erasure_requests_request_id_seq; Type: SEQUENCE; Schema: audit; Owner: -
--

ALTER TABLE audit.erasure_requests ALTER COLUMN request_id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME audit.erasure_requests_request_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: erasure_watermark; Type: TABLE; Schema: audit; Owner: -
--

CREATE TABLE audit.erasure_watermark (
    id boolean DEFAULT true NOT NULL,
    loaded_through timestamp with time zone NOT NULL,
    CONSTRAINT erasure_watermark_id_check CHECK (id)
);


--
-- Name: gate_results; Type: TABLE; Schema: audit; Owner: -
--

CREATE TABLE audit.gate_results (
    run_id text NOT NULL,
    stage text NOT NULL,
    suite text NOT NULL,
    expectation text NOT NULL,
    column_name text,
    success boolean NOT NULL,
    unexpected_count bigint,
    observed_value text,
    sample jsonb,
    checked_at timestamp with time zone NOT NULL
);


--
-- Name: load_files; Type: TABLE; Schema: audit; Owner: -
--

CREATE TABLE audit.load_files (
    source text NOT NULL,
    source_file text NOT NULL,
    sha256 text NOT NULL,
    row_count bigint NOT NULL,
    batch_id text NOT NULL,
    loaded_at timestamp with time zone NOT NULL
);


--
-- Name: pipeline_runs; Type: TABLE; Schema: audit; Owner: -
--

CREATE TABLE audit.pipeline_runs (
    run_id text NOT NULL,
    as_of_date date,
    status text NOT NULL,
    summary jsonb,
    updated_at timestamp with time zone NOT NULL
);


--
-- Name: publications; Type: TABLE; Schema: audit; Owner: -
--

CREATE TABLE audit.publications (
    run_id text NOT NULL,
    published_at timestamp with time zone NOT NULL,
    tables text[] NOT NULL
);


--
-- Name: run_health; Type: TABLE; Schema: audit; Owner: -
--

CREATE TABLE audit.run_health (
    run_id text NOT NULL,
    as_of_date date,
    status text NOT NULL,
    section text NOT NULL,
    item text NOT NULL,
    metric text NOT NULL,
    value numeric,
    detail text,
    recorded_at timestamp with time zone NOT NULL
);


--
-- Name: run_locks; Type: TABLE; Schema: audit; Owner: -
--

CREATE TABLE audit.run_locks (
    part text NOT NULL,
    run_id text NOT NULL,
    as_of_date date,
    host text NOT NULL,
    pid integer NOT NULL,
    backend_pid integer NOT NULL,
    since timestamp with time zone NOT NULL
);


--
-- Name: schema_drift; Type: TABLE; Schema: audit; Owner: -
--

CREATE TABLE audit.schema_drift (
    source text NOT NULL,
    table_name text NOT NULL,
    column_name text NOT NULL,
    change text NOT NULL,
    first_seen_file text NOT NULL,
    first_seen_batch text NOT NULL,
    detected_at timestamp with time zone NOT NULL
);


--
-- Name: segment_exports; Type: TABLE; Schema: audit; Owner: -
--

CREATE TABLE audit.segment_exports (
    exported_at timestamp with time zone DEFAULT now() NOT NULL,
    exported_by text NOT NULL,
    db_role text DEFAULT CURRENT_USER NOT NULL,
    segment_name text NOT NULL,
    segment_version text,
    row_count bigint NOT NULL,
    destination text,
    format text NOT NULL
);


--
-- Name: segment_sizes; Type: TABLE; Schema: audit; Owner: -
--

CREATE TABLE audit.segment_sizes (
    run_id text NOT NULL,
    as_of_date date NOT NULL,
    segment_name text NOT NULL,
    version text NOT NULL,
    filter_sql text NOT NULL,
    customers bigint NOT NULL,
    contactable_customers bigint NOT NULL,
    recorded_at timestamp with time zone DEFAULT now() NOT NULL
);


--
-- Name: source_freshness; Type: TABLE; Schema: audit; Owner: -
--

CREATE TABLE audit.source_freshness (
    run_id text NOT NULL,
    source_name text NOT NULL,
    table_name text NOT NULL,
    status text NOT NULL,
    max_loaded_at timestamp with time zone,
    age_seconds numeric,
    checked_at timestamp with time zone NOT NULL
);


--
-- Name: value_model_fits; Type: TABLE; Schema: audit; Owner: -
--

CREATE TABLE audit.value_model_fits (
    as_of_date date NOT NULL,
    model text NOT NULL,
    params jsonb,
    log_likelihood double precision,
    customers integer NOT NULL,
    converged boolean NOT NULL,
    message text,
    seconds double precision,
    fitted_at timestamp with time zone NOT NULL
);


--
-- Name: customer_value; Type: TABLE; Schema: predictions; Owner: -
--

CREATE TABLE predictions.customer_value (
    customer_key text NOT NULL,
    predicted_purchases double precision,
    probability_alive double precision,
    expected_order_value_eur double precision,
    predicted_clv_eur double precision,
    as_of_date date NOT NULL
);


--
-- Name: _quarantine; Type: TABLE; Schema: raw; Owner: -
--

CREATE TABLE raw._quarantine (
    source text NOT NULL,
    table_name text NOT NULL,
    source_file text NOT NULL,
    line_number bigint,
    record_number bigint,
    reason text NOT NULL,
    raw_record text,
    _batch_id text NOT NULL,
    _loaded_at timestamp with time zone NOT NULL
);


--
-- Name: sales_customers; Type: TABLE; Schema: raw; Owner: -
--

CREATE TABLE raw.sales_customers (
    customer_id text,
    account_type text,
    first_name text,
    last_name text,
    email text,
    phone text,
    gender text,
    birth_year text,
    income_band text,
    occupation text,
    city text,
    region text,
    country_code text,
    acquisition_channel text,
    marketing_consent text,
    created_at text,
    updated_at text,
    _batch_id text DEFAULT current_setting('crm360.batch_id'::text) NOT NULL,
    _source_file text DEFAULT current_setting('crm360.source_file'::text) NOT NULL COLLATE pg_catalog."C",
    _loaded_at timestamp with time zone DEFAULT (current_setting('crm360.loaded_at'::text))::timestamp with time zone NOT NULL,
    loyalty_tier text
);


--
-- Name: sales_order_lines; Type: TABLE; Schema: raw; Owner: -
--

CREATE TABLE raw.sales_order_lines (
    order_id text,
    line_number text,
    product_id text,
    quantity text,
    unit_price text,
    _batch_id text DEFAULT current_setting('crm360.batch_id'::text) NOT NULL,
    _source_file text DEFAULT current_setting('crm360.source_file'::text) NOT NULL COLLATE pg_catalog."C",
    _loaded_at timestamp with time zone DEFAULT (current_setting('crm360.loaded_at'::text))::timestamp with time zone NOT NULL
);


--
-- Name: sales_orders; Type: TABLE; Schema: raw; Owner: -
--

CREATE TABLE raw.sales_orders (
    order_id text,
    customer_id text,
    ordered_at text,
    status text,
    currency text,
    channel text,
    refund_amount text,
    updated_at text,
    _batch_id text DEFAULT current_setting('crm360.batch_id'::text) NOT NULL,
    _source_file text DEFAULT current_setting('crm360.source_file'::text) NOT NULL COLLATE pg_catalog."C",
    _loaded_at timestamp with time zone DEFAULT (current_setting('crm360.loaded_at'::text))::timestamp with time zone NOT NULL
);


--
-- Name: sales_products; Type: TABLE; Schema: raw; Owner: -
--

CREATE TABLE raw.sales_products (
    product_id text,
    product_name text,
    category text,
    list_price text,
    _batch_id text DEFAULT current_setting('crm360.batch_id'::text) NOT NULL,
    _source_file text DEFAULT current_setting('crm360.source_file'::text) NOT NULL COLLATE pg_catalog."C",
    _loaded_at timestamp with time zone DEFAULT (current_setting('crm360.loaded_at'::text))::timestamp with time zone NOT NULL
);


--
-- Name: service_tickets; Type: TABLE; Schema: raw; Owner: -
--

CREATE TABLE raw.service_tickets (
    _record_number integer NOT NULL,
    record jsonb NOT NULL,
    _batch_id text DEFAULT current_setting('crm360.batch_id'::text) NOT NULL,
    _source_file text DEFAULT current_setting('crm360.source_file'::text) NOT NULL COLLATE pg_catalog."C",
    _loaded_at timestamp with time zone DEFAULT (current_setting('crm360.loaded_at'::text))::timestamp with time zone NOT NULL
);


--
-- Name: web_events; Type: TABLE; Schema: raw; Owner: -
--

CREATE TABLE raw.web_events (
    _record_number integer NOT NULL,
    record jsonb NOT NULL,
    _batch_id text DEFAULT current_setting('crm360.batch_id'::text) NOT NULL,
    _source_file text DEFAULT current_setting('crm360.source_file'::text) NOT NULL COLLATE pg_catalog."C",
    _loaded_at timestamp with time zone DEFAULT (current_setting('crm360.loaded_at'::text))::timestamp with time zone NOT NULL
);


--
-- Data for Name: erased_identifiers; Type: TABLE DATA; Schema: audit; Owner: -
--



--
-- Data for Name: erasure_requests; Type: TABLE DATA; Schema: audit; Owner: -
--

INSERT INTO audit.erasure_requests OVERRIDING SYSTEM VALUE VALUES (1, '2026-12-06 21:49:13.668395+00', 'fixture', 'email', 'c1ab2e558c55746cd739524ff4165e7012a9d55f8c3eeb60a81b8d1277d0a31c', 'ticket 1', 'pending', NULL, NULL, NULL, NULL);


--
-- Data for Name: erasure_watermark; Type: TABLE DATA; Schema: audit; Owner: -
--



--
-- Data for Name: gate_results; Type: TABLE DATA; Schema: audit; Owner: -
--



--
-- Data for Name: load_files; Type: TABLE DATA; Schema: audit; Owner: -
--

INSERT INTO audit.load_files VALUES ('sales', 'sales/2026-10-30/products.csv', '84abb2daf2a24d5e379326a107068e62439e6b728959a8f51dc1eb7624edcfb5', 2, 'cli_2026-11-01:sales', '2026-12-06 21:49:13.405938+00');
INSERT INTO audit.load_files VALUES ('sales', 'sales/2026-10-30/orders.csv', '77e29a4eb71a163f0761afa9c275ef7a45cf508b763758e62d1f94759c9abe9e', 2, 'cli_2026-11-01:sales', '2026-12-06 21:49:13.405938+00');
INSERT INTO audit.load_files VALUES ('sales', 'sales/2026-10-31/orders.csv', 'aa06854908be876d5096de38c309286906db6c622e291363e801fe6b8b925c75', 2, 'cli_2026-11-01:sales', '2026-12-06 21:49:13.405938+00');
INSERT INTO audit.load_files VALUES ('sales', 'sales/2026-10-30/customers.csv', '7671d6e443e3e287abae69b6539aa7fbd076ffe5a76f06b5361218c83f5486d0', 2, 'cli_2026-11-01:sales', '2026-12-06 21:49:13.405938+00');
INSERT INTO audit.load_files VALUES ('sales', 'sales/2026-10-30/order_lines.csv', '5af9d31592cb4016dbb0a26d3e4ae1e79b269c5a7370c0c0997a1da427528552', 2, 'cli_2026-11-01:sales', '2026-12-06 21:49:13.405938+00');
INSERT INTO audit.load_files VALUES ('sales', 'sales/2026-10-31/order_lines.csv', 'b6c3879c967c097e80efcb7967ef45c800f92c3131f1b4518abf641e63e68f90', 1, 'cli_2026-11-01:sales', '2026-12-06 21:49:13.405938+00');
INSERT INTO audit.load_files VALUES ('service', 'service/tickets_2026-10-31.json', 'f94a1403ba127de28bc4e85cd252d2031a1fb6b31675e5daf45f6446367c4e5a', 1, 'cli_2026-11-01:service', '2026-12-06 21:49:13.527595+00');
INSERT INTO audit.load_files VALUES ('web', 'web/events_2026-10-31.jsonl', '4269ae076d09de7eef7b66fd86fc932fac76d425ba725623a2f169ad1f37e334', 2, 'cli_2026-11-01:web', '2026-12-06 21:49:13.588132+00');


--
-- Data for Name: pipeline_runs; Type: TABLE DATA; Schema: audit; Owner: -
--

INSERT INTO audit.pipeline_runs VALUES ('cli_2026-11-01', '2026-11-01', 'success', '{"note": "fixture"}', '2026-12-06 21:49:13.657551+00');


--
-- Data for Name: publications; Type: TABLE DATA; Schema: audit; Owner: -
--



--
-- Data for Name: run_health; Type: TABLE DATA; Schema: audit; Owner: -
--



--
-- Data for Name: run_locks; Type: TABLE DATA; Schema: audit; Owner: -
--



--
-- Data for Name: schema_drift; Type: TABLE DATA; Schema: audit; Owner: -
--

INSERT INTO audit.schema_drift VALUES ('sales', 'sales_customers', 'loyalty_tier', 'column added to raw', 'sales/2026-10-30/customers.csv', 'cli_2026-11-01:sales', '2026-12-06 21:49:13.479258+00');
INSERT INTO audit.schema_drift VALUES ('web', 'web_events', 'ab_test', 'field kept in record', 'web/events_2026-10-31.jsonl', 'cli_2026-11-01:web', '2026-12-06 21:49:13.638416+00');


--
-- Data for Name: segment_exports; Type: TABLE DATA; Schema: audit; Owner: -
--



--
-- Data for Name: segment_sizes; Type: TABLE DATA; Schema: audit; Owner: -
--



--
-- Data for Name: source_freshness; Type: TABLE DATA; Schema: audit; Owner: -
--



--
-- Data for Name: value_model_fits; Type: TABLE DATA; Schema: audit; Owner: -
--



--
-- Data for Name: customer_value; Type: TABLE DATA; Schema: predictions; Owner: -
--



--
-- Data for Name: _quarantine; Type: TABLE DATA; Schema: raw; Owner: -
--

INSERT INTO raw._quarantine VALUES ('sales', 'sales_orders', 'sales/2026-10-31/orders.csv', 4, 3, 'ordered_at: not a valid timestamptz: 2026-02-30T08:45:00+00:00', 'O5,C2,2026-02-30T08:45:00+00:00,completed,EUR,web,,2026-10-31T08:45:00+00:00', 'cli_2026-11-01:sales', '2026-12-06 21:49:13.405938+00');
INSERT INTO raw._quarantine VALUES ('web', 'web_events', 'web/events_2026-10-31.jsonl', 3, 3, 'invalid JSON (Invalid control character at)', '{"broken', 'cli_2026-11-01:web', '2026-12-06 21:49:13.588132+00');


--
-- Data for Name: sales_customers; Type: TABLE DATA; Schema: raw; Owner: -
--

INSERT INTO raw.sales_customers VALUES ('C1', 'registered', 'Ann', 'Smith', 'ann@example.com', '+31201234567', 'f', '1980', 'middle', 'teacher', 'Utrecht', 'Utrecht', 'NL', 'web', 'true', '2026-10-30T09:00:00+00:00', '2026-10-30T09:00:00+00:00', 'cli_2026-11-01:sales', 'sales/2026-10-30/customers.csv', '2026-12-06 21:49:13.405938+00', 'gold');
INSERT INTO raw.sales_customers VALUES ('C2', 'registered', 'Bob', 'Jones', 'bob@example.com', NULL, 'm', '1975', 'high', 'engineer', 'Delft', 'Zuid-Holland', 'NL', 'store', 'false', '2026-10-30T10:00:00+00:00', '2026-10-30T10:00:00+00:00', 'cli_2026-11-01:sales', 'sales/2026-10-30/customers.csv', '2026-12-06 21:49:13.405938+00', NULL);


--
-- Data for Name: sales_order_lines; Type: TABLE DATA; Schema: raw; Owner: -
--

INSERT INTO raw.sales_order_lines VALUES ('O1', '1', 'P1', '1', '29.90', 'cli_2026-11-01:sales', 'sales/2026-10-30/order_lines.csv', '2026-12-06 21:49:13.405938+00');
INSERT INTO raw.sales_order_lines VALUES ('O2', '1', 'P2', '2', '45.00', 'cli_2026-11-01:sales', 'sales/2026-10-30/order_lines.csv', '2026-12-06 21:49:13.405938+00');
INSERT INTO raw.sales_order_lines VALUES ('O3', '1', 'P2', '1', '49.00', 'cli_2026-11-01:sales', 'sales/2026-10-31/order_lines.csv', '2026-12-06 21:49:13.405938+00');


--
-- Data for Name: sales_orders; Type: TABLE DATA; Schema: raw; Owner: -
--

INSERT INTO raw.sales_orders VALUES ('O1', 'C1', '2026-10-30T11:00:00+00:00', 'completed', 'EUR', 'web', NULL, '2026-10-30T11:00:00+00:00', 'cli_2026-11-01:sales', 'sales/2026-10-30/orders.csv', '2026-12-06 21:49:13.405938+00');
INSERT INTO raw.sales_orders VALUES ('O2', 'C2', '2026-10-30T12:00:00+00:00', 'completed', 'EUR', 'store', NULL, '2026-10-30T12:00:00+00:00', 'cli_2026-11-01:sales', 'sales/2026-10-30/orders.csv', '2026-12-06 21:49:13.405938+00');
INSERT INTO raw.sales_orders VALUES ('O3', 'C1', '2026-10-31T08:30:00+00:00', 'completed', 'EUR', 'web', NULL, '2026-10-31T08:30:00+00:00', 'cli_2026-11-01:sales', 'sales/2026-10-31/orders.csv', '2026-12-06 21:49:13.405938+00');
INSERT INTO raw.sales_orders VALUES ('O4', 'C9', '2026-10-31T08:45:00+00:00', 'teleported', 'EUR', 'web', NULL, '2026-10-31T08:45:00+00:00', 'cli_2026-11-01:sales', 'sales/2026-10-31/orders.csv', '2026-12-06 21:49:13.405938+00');


--
-- Data for Name: sales_products; Type: TABLE DATA; Schema: raw; Owner: -
--

INSERT INTO raw.sales_products VALUES ('P1', 'Kettle', 'kitchen', '29.90', 'cli_2026-11-01:sales', 'sales/2026-10-30/products.csv', '2026-12-06 21:49:13.405938+00');
INSERT INTO raw.sales_products VALUES ('P2', 'Toaster', 'kitchen', '49.00', 'cli_2026-11-01:sales', 'sales/2026-10-30/products.csv', '2026-12-06 21:49:13.405938+00');


--
-- Data for Name: service_tickets; Type: TABLE DATA; Schema: raw; Owner: -
--

INSERT INTO raw.service_tickets VALUES (1, '{"id": "T1", "type": "complaint", "status": "solved", "channel": "email", "subject": "Lid", "requester": {"name": "Ann Smith", "email": "ann@example.com"}, "solved_at": "2026-10-31T10:00:00Z", "created_at": "2026-10-31T09:00:00Z", "customer_ref": "C1", "satisfaction": 4}', 'cli_2026-11-01:service', 'service/tickets_2026-10-31.json', '2026-12-06 21:49:13.527595+00');


--
-- Data for Name: web_events; Type: TABLE DATA; Schema: raw; Owner: -
--

INSERT INTO raw.web_events VALUES (1, '{"page": "/", "event_id": "e1", "event_type": "page_view", "visitor_id": "v1", "occurred_at": "2026-10-31T07:00:00Z"}', 'cli_2026-11-01:web', 'web/events_2026-10-31.jsonl', '2026-12-06 21:49:13.588132+00');
INSERT INTO raw.web_events VALUES (2, '{"page": "/account", "ab_test": "b", "event_id": "e2", "event_type": "login", "visitor_id": "v1", "customer_id": "C1", "occurred_at": "2026-10-31T07:01:00Z"}', 'cli_2026-11-01:web', 'web/events_2026-10-31.jsonl', '2026-12-06 21:49:13.588132+00');


--
-- Name: erasure_requests_request_id_seq; Type: SEQUENCE SET; Schema: audit; Owner: -
--

SELECT pg_catalog.setval('audit.erasure_requests_request_id_seq', 1, true);


--
-- Name: erased_identifiers erased_identifiers_pkey; Type: CONSTRAINT; Schema: audit; Owner: -
--

ALTER TABLE ONLY audit.erased_identifiers
    ADD CONSTRAINT erased_identifiers_pkey PRIMARY KEY (identifier_type, identifier_hash);


--
-- Name: erasure_requests erasure_requests_pkey; Type: CONSTRAINT; Schema: audit; Owner: -
--

ALTER TABLE ONLY audit.erasure_requests
    ADD CONSTRAINT erasure_requests_pkey PRIMARY KEY (request_id);


--
-- Name: erasure_watermark erasure_watermark_pkey; Type: CONSTRAINT; Schema: audit; Owner: -
--

ALTER TABLE ONLY audit.erasure_watermark
    ADD CONSTRAINT erasure_watermark_pkey PRIMARY KEY (id);


--
-- Name: load_files load_files_pkey; Type: CONSTRAINT; Schema: audit; Owner: -
--

ALTER TABLE ONLY audit.load_files
    ADD CONSTRAINT load_files_pkey PRIMARY KEY (source, source_file);


--
-- Name: pipeline_runs pipeline_runs_pkey; Type: CONSTRAINT; Schema: audit; Owner: -
--

ALTER TABLE ONLY audit.pipeline_runs
    ADD CONSTRAINT pipeline_runs_pkey PRIMARY KEY (run_id);


--
-- Name: run_locks run_locks_pkey; Type: CONSTRAINT; Schema: audit; Owner: -
--

ALTER TABLE ONLY audit.run_locks
    ADD CONSTRAINT run_locks_pkey PRIMARY KEY (part);


--
-- Name: schema_drift schema_drift_pkey; Type: CONSTRAINT; Schema: audit; Owner: -
--

ALTER TABLE ONLY audit.schema_drift
    ADD CONSTRAINT schema_drift_pkey PRIMARY KEY (table_name, column_name);


--
-- Name: segment_sizes segment_sizes_pkey; Type: CONSTRAINT; Schema: audit; Owner: -
--

ALTER TABLE ONLY audit.segment_sizes
    ADD CONSTRAINT segment_sizes_pkey PRIMARY KEY (run_id, segment_name);


--
-- Name: value_model_fits value_model_fits_pkey; Type: CONSTRAINT; Schema: audit; Owner: -
--

ALTER TABLE ONLY audit.value_model_fits
    ADD CONSTRAINT value_model_fits_pkey PRIMARY KEY (as_of_date, model);


--
-- Name: customer_value customer_value_pkey; Type: CONSTRAINT; Schema: predictions; Owner: -
--

ALTER TABLE ONLY predictions.customer_value
    ADD CONSTRAINT customer_value_pkey PRIMARY KEY (customer_key);


--
-- Name: _quarantine__source_file_idx; Type: INDEX; Schema: raw; Owner: -
--

CREATE INDEX _quarantine__source_file_idx ON raw._quarantine USING btree (source_file);


--
-- Name: sales_customers__loaded_at_idx; Type: INDEX; Schema: raw; Owner: -
--

CREATE INDEX sales_customers__loaded_at_idx ON raw.sales_customers USING brin (_loaded_at);


--
-- Name: sales_customers__source_file_brin; Type: INDEX; Schema: raw; Owner: -
--

CREATE INDEX sales_customers__source_file_brin ON raw.sales_customers USING brin (_source_file) WITH (pages_per_range='8', autosummarize='on');


--
-- Name: sales_order_lines__loaded_at_idx; Type: INDEX; Schema: raw; Owner: -
--

CREATE INDEX sales_order_lines__loaded_at_idx ON raw.sales_order_lines USING brin (_loaded_at);


--
-- Name: sales_order_lines__source_file_brin; Type: INDEX; Schema: raw; Owner: -
--

CREATE INDEX sales_order_lines__source_file_brin ON raw.sales_order_lines USING brin (_source_file) WITH (pages_per_range='8', autosummarize='on');


--
-- Name: sales_orders__loaded_at_idx; Type: INDEX; Schema: raw; Owner: -
--

CREATE INDEX sales_orders__loaded_at_idx ON raw.sales_orders USING brin (_loaded_at);


--
-- Name: sales_orders__source_file_brin; Type: INDEX; Schema: raw; Owner: -
--

CREATE INDEX sales_orders__source_file_brin ON raw.sales_orders USING brin (_source_file) WITH (pages_per_range='8', autosummarize='on');


--
-- Name: sales_products__loaded_at_idx; Type: INDEX; Schema: raw; Owner: -
--

CREATE INDEX sales_products__loaded_at_idx ON raw.sales_products USING brin (_loaded_at);


--
-- Name: sales_products__source_file_brin; Type: INDEX; Schema: raw; Owner: -
--

CREATE INDEX sales_products__source_file_brin ON raw.sales_products USING brin (_source_file) WITH (pages_per_range='8', autosummarize='on');


--
-- Name: service_tickets__loaded_at_idx; Type: INDEX; Schema: raw; Owner: -
--

CREATE INDEX service_tickets__loaded_at_idx ON raw.service_tickets USING brin (_loaded_at);


--
-- Name: service_tickets__source_file_brin; Type: INDEX; Schema: raw; Owner: -
--

CREATE INDEX service_tickets__source_file_brin ON raw.service_tickets USING brin (_source_file) WITH (pages_per_range='8', autosummarize='on');


--
-- Name: web_events__loaded_at_idx; Type: INDEX; Schema: raw; Owner: -
--

CREATE INDEX web_events__loaded_at_idx ON raw.web_events USING brin (_loaded_at);


--
-- Name: web_events__source_file_brin; Type: INDEX; Schema: raw; Owner: -
--

CREATE INDEX web_events__source_file_brin ON raw.web_events USING brin (_source_file) WITH (pages_per_range='8', autosummarize='on');


--
--


