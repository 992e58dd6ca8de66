{#- The customer keys whose inputs changed since the last build that completed the customer-level
    models (macros/affected_customers.sql), one row per key and reason:
    - identity: a key that gained or lost an identifier against the mapping that build saw
      (int_customer_keys_seen): both the old and the new keys of a merge or a split, a key whose
      person was erased (their identifiers are gone);
    - sales: the current key of an order's customer, for orders loaded since then (new or
      changed: the customer before and after a change of the order's customer), for the
      orders of order lines loaded since then, and for the orders of products whose category or
      list price changed since then (against int_products_seen);
    - web: the current key of a visitor with web events loaded since then;
    - profile: a key that kept its identifiers, one of which was first seen at another time, or
      whose anchor's shop record has another e-mail or phone (what int_customers_resolved shows
      beyond the identifiers themselves).
    A row with a null key means everyone, for its reason: the first build or a full refresh
    ('all'), a day that replaced files of a source (its rebuilt staging keeps no trace of the rows
    it lost), changed exchange rates or reporting currency, or a changed rule var ('sales').
    Customers whose time-based attributes change without a new row (recency, lifecycle windows)
    are not listed: those attributes are computed by the non-incremental models from as_of_date. #}
-- depends_on: {{ ref('int_identifiers_linked') }}
-- depends_on: {{ ref('stg_sales__orders') }}
-- depends_on: {{ ref('stg_sales__order_lines') }}
-- depends_on: {{ ref('stg_web__events') }}
-- depends_on: {{ ref('stg_sales__products') }}
-- depends_on: {{ ref('stg_sales__customers') }}
-- depends_on: {{ ref('stg_sales__currency_rates') }}
{%- set keys_seen = customer_state_relation('int_customer_keys_seen') -%}
{%- set keys_seen_columns = column_names(keys_seen) -%}
{%- set orders_seen = customer_state_relation('int_order_customers_seen') -%}
{%- set inputs_seen = customer_state_relation('int_customer_inputs_seen') -%}
{%- set products_seen = customer_state_relation('int_products_seen') -%}
{%- if flags.FULL_REFRESH or keys_seen is none or orders_seen is none or inputs_seen is none
      or products_seen is none %}
select cast(null as text) as customer_key, 'all' as reason
{%- else %}
with seen as (
    select
        {{ seen_loaded_at(inputs_seen, 'orders') }} as orders_loaded_at,
        {{ seen_loaded_at(inputs_seen, 'order_lines') }} as lines_loaded_at,
        {{ seen_loaded_at(inputs_seen, 'web_events') }} as events_loaded_at,
        (select max(digest) from {{ inputs_seen }} where input = 'rates') as rates_digest,
        (select max(digest) from {{ inputs_seen }} where input = 'rules') as rules_digest
),

identifiers as (
    select * from {{ ref('int_identifiers_linked') }}
),

shop_customers as (
    select * from {{ ref('stg_sales__customers') }}
),

linked as (
    select
        identifiers.identifier_type,
        identifiers.identifier_value,
        {{ identifier_state_columns('identifiers', 'shop_customers') }}
    from identifiers
    left join shop_customers on {{ anchor_shop_record('identifiers', 'shop_customers') }}
),

shop_keys as (
    select identifier_value as shop_customer_id, customer_key
    from linked
    where identifier_type = 'shop_customer_id'
),

identity_changes as (
    select distinct changed.customer_key
    from {{ keys_seen }} as before
    full join linked on before.identifier_hash = linked.identifier_hash
    cross join lateral (values (before.customer_key), (linked.customer_key)) as changed (customer_key)
    where before.customer_key is distinct from linked.customer_key
        and changed.customer_key is not null
),

profile_changes as (
    -- a key that kept its identifiers, one of which was first seen at another time, or whose
    -- anchor's shop record has another e-mail or phone (int_customers_resolved's primary contacts)
    {%- if 'contacts_digest' in keys_seen_columns %}
    select distinct linked.customer_key
    from {{ keys_seen }} as before
    inner join linked
        on before.identifier_hash = linked.identifier_hash and before.customer_key = linked.customer_key
    where (before.first_seen_at, before.contacts_digest) is distinct from (linked.first_seen_at, linked.contacts_digest)
    {%- else %}
    -- the last build's mapping kept neither: everyone, once
    select cast(null as text) as customer_key
    {%- endif %}
),

new_orders as (
    select orders.order_id, orders.customer_id
    from {{ ref('stg_sales__orders') }} as orders
    where orders.loaded_at > (select orders_loaded_at from seen)
),

changed_products as (
    -- a product added, removed, or with another category or list price than the last build saw
    select coalesce(products.product_id, before.product_id) as product_id
    from {{ ref('stg_sales__products') }} as products
    full join {{ products_seen }} as before on products.product_id = before.product_id
    where products.product_id is null or before.product_id is null
        or products.category is distinct from before.category
        or products.list_price is distinct from before.list_price
),

sales_customers as (
    -- the order's customer now, and before if the order changed hands
    select customer_id as shop_customer_id from new_orders
    union
    select before.shop_customer_id
    from new_orders
    inner join {{ orders_seen }} as before on new_orders.order_id = before.order_id
    union
    -- the orders of order lines loaded since, or of a changed product
    select orders.customer_id
    from {{ ref('stg_sales__order_lines') }} as order_lines
    inner join {{ ref('stg_sales__orders') }} as orders on order_lines.order_id = orders.order_id
    where order_lines.loaded_at > (select lines_loaded_at from seen)
        or order_lines.product_id in (select product_id from changed_products)
),

sales_changes as (
    select distinct shop_keys.customer_key
    from sales_customers
    inner join shop_keys on sales_customers.shop_customer_id = shop_keys.shop_customer_id
),

web_changes as (
    select distinct linked.customer_key
    from (
        select distinct visitor_id from {{ ref('stg_web__events') }}
        where loaded_at > (select events_loaded_at from seen)
    ) as visitors
    inner join linked
        on linked.identifier_type = 'visitor_id' and linked.identifier_value = visitors.visitor_id
),

rates as (
    select {{ rates_digest() }} as rates_digest from {{ ref('stg_sales__currency_rates') }}
),

replaced as (
    -- a gated attempt since the last build that replaced or put back files: staging was rebuilt
    select attempts.source
    from audit.load_attempts as attempts
    cross join seen
    where attempts.status = 'gated' and attempts.replaced_files > 0
        and attempts.source in ('sales', 'web')
        and attempts.loaded_at > case attempts.source
            when 'sales' then least(seen.orders_loaded_at, seen.lines_loaded_at)
            else seen.events_loaded_at
        end
    group by attempts.source
),

everyone as (
    select source as reason from replaced
    union
    select 'sales'
    from seen cross join rates
    where seen.rates_digest is distinct from rates.rates_digest
        or seen.rules_digest is distinct from {{ customer_rules_digest() }}
)

select cast(null as text) as customer_key, reason from everyone
union all
select customer_key, 'identity' from identity_changes
union all
select customer_key, 'profile' from profile_changes
union all
select customer_key, 'sales' from sales_changes
union all
select customer_key, 'web' from web_changes
{%- endif %}
