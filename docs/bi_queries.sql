-- The queries the BI dashboards issue against the published marts, and the index
-- each one is served by. The marts' post-hooks create these indexes (ensure_index
-- in dbt_project/macros/incremental.sql) while building in marts__build; the
-- publication renames the schema, and the indexes move with their tables.
--
-- Format, read by tests/test_contracts.py: every query starts with a "-- query:"
-- line naming it, then "-- dashboard:" and "-- index:" lines, and ends with ";".
-- {{name}} is a filter value, written the way a Metabase native question takes a
-- variable, so a query can be pasted into Metabase as is. The test fills the
-- values from a built warehouse, runs EXPLAIN and checks the plan uses the index.
-- A query added here needs its index, or the test fails.

-- query: customer_by_key
-- dashboard: Customer 360 lookup
-- index: customer_360__customer_key__btree_idx
select *
from marts.customer_360
where customer_key = {{customer_key}};

-- query: customer_by_email
-- dashboard: Customer 360 lookup
-- index: customer_360__email__btree_idx
-- The customer whose primary e-mail this is (e-mails are stored lower case).
select customer_key, full_name, email, phone, lifecycle_stage, revenue_tier, value_tier, revenue
from marts.customer_360
where email = lower({{email}});

-- query: customer_by_identifier
-- dashboard: Customer 360 lookup
-- index: customer_identifiers__identifier_value__btree_idx
-- Any identifier (e-mail, phone, shop customer id, web visitor id), primary or not:
-- the customer it is linked to, or why it is linked to nobody.
select identifier_type, identifier_value, customer_key, link_rule, blocked_reason
from marts.customer_identifiers
where identifier_value = {{identifier_value}};

-- query: customer_identifiers
-- dashboard: Customer 360 lookup
-- index: customer_identifiers__customer_key__btree_idx
select identifier_type, identifier_value, is_anchor, link_rule, first_seen_at
from marts.customer_identifiers
where customer_key = {{customer_key}}
order by identifier_type, identifier_value;

-- query: customer_next_products
-- dashboard: Customer 360 lookup
-- index: customer_next_product__customer_key_suggestion_rank__btree_idx
select suggestion_rank, product_name, category, because_of_product_id, confidence, lift
from marts.customer_next_product
where customer_key = {{customer_key}}
order by suggestion_rank;

-- query: customers_by_revenue_tier_and_stage
-- dashboard: Customer pyramid
-- index: customer_360__revenue_tier_lifecycle_stage__btree_idx
select customer_key, full_name, email, revenue, last_order_at
from marts.customer_360
where revenue_tier = {{revenue_tier}}
    and lifecycle_stage = {{lifecycle_stage}}
order by revenue desc
limit 500;

-- query: customers_by_value_tier_and_stage
-- dashboard: Customer pyramid
-- index: customer_360__value_tier_lifecycle_stage__btree_idx
select customer_key, full_name, email, predicted_clv, probability_alive
from marts.customer_360
where value_tier = {{value_tier}}
    and lifecycle_stage = {{lifecycle_stage}}
order by predicted_clv desc nulls last
limit 500;

-- query: pyramid_at_snapshot
-- dashboard: Customer pyramid
-- index: customer_pyramid_summary__snapshot_date_pyramid__btree_idx
-- One pyramid at one snapshot date (month starts and the run date; the run date's
-- rows have is_current).
select tier, customers, revenue, share_of_customers, share_of_revenue
from marts.customer_pyramid_summary
where snapshot_date = {{snapshot_date}}
    and pyramid = {{pyramid}}
order by tier_order;

-- query: tier_movements_at_snapshot
-- dashboard: Customer pyramid
-- index: customer_tier_movements__snapshot_date_pyramid__btree_idx
select from_tier, to_tier, movement, tiers_moved, customers, period_revenue
from marts.customer_tier_movements
where snapshot_date = {{snapshot_date}}
    and pyramid = {{pyramid}}
order by from_tier, to_tier;

-- query: customer_tier_on_date
-- dashboard: Customer 360 lookup
-- index: customer_tier_history__customer_key_pyramid__btree_idx
-- The customer's tier on a date, and how they got there: the period holding the date.
select tier, valid_from, valid_to, previous_tier, movement
from marts.customer_tier_history
where customer_key = {{customer_key}}
    and pyramid = {{pyramid}}
    and valid_from <= {{on_date}}
    and (valid_to > {{on_date}} or valid_to is null);

-- query: call_list_of_day
-- dashboard: Service follow-up
-- index: customer_call_list__call_date_call_rank__btree_idx
select call_rank, full_name, phone, value_tier, revenue_tier, lifecycle_stage, reason
from marts.customer_call_list
where call_date = {{call_date}}
order by call_rank;
