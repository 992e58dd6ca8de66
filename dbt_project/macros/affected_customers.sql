{#- Customer-level models built for the customers a build touched (int_customers_affected).

    int_customers_affected lists, per build, the customer keys whose inputs changed since the
    last build that completed the customer-level models, with the reason ('identity', 'sales',
    'web'); a row with a null key means every customer, for that reason. What "the last build"
    saw is kept in the int_*_seen models, built after the incremental consumers: a build
    that fails before them leaves the old state, so the next build recomputes a superset.

    A consumer is an incremental model with incremental_strategy='append' whose pre-hook is
    clear_affected_customers(reasons) and whose rows are read through affected_filter(reasons):
    on a first build or a full refresh it is computed whole; when one of its reasons says
    "everyone" it is emptied and computed whole; else its affected keys' rows are deleted and
    computed again (a key that lost all its rows stays deleted). -#}

{#- The relation of a model of this project's int_*_seen state, or none if it was never
    built. Read without ref(): it is the previous build's state, written after the consumers. -#}
{% macro customer_state_relation(name) -%}
    {{ return(adapter.get_relation(database=this.database, schema=this.schema, identifier=name)) }}
{%- endmacro %}

{#- 'rebuild' or 'delta' for this incremental consumer, given the reasons it depends on. -#}
{% macro affected_mode(reasons) -%}
    {%- if not is_incremental() -%}
        {{ return('rebuild') }}
    {%- endif -%}
    {%- if not execute -%}
        {{ return('delta') }}
    {%- endif -%}
    {%- set query -%}
        select exists (select 1 from {{ ref('int_customers_affected') }}
                       where customer_key is null and reason in ('all', '{{ reasons | join("', '") }}'))
    {%- endset -%}
    {{ return('rebuild' if run_query(query).columns[0].values()[0] else 'delta') }}
{%- endmacro %}

{#- A pre-hook of a consumer: empty it on a rebuild, else delete its affected keys' rows. -#}
{% macro clear_affected_customers(reasons) -%}
    {%- if not is_incremental() -%}
        select 1
    {%- elif affected_mode(reasons) == 'rebuild' -%}
        delete from {{ this }}
    {%- else -%}
        delete from {{ this }}
        where customer_key in (select customer_key from {{ ref('int_customers_affected') }}
                               where reason in ('{{ reasons | join("', '") }}'))
    {%- endif -%}
{%- endmacro %}

{#- A predicate on a customer key column: true on a rebuild, else only the affected keys. -#}
{% macro affected_filter(column, reasons) -%}
    {%- if affected_mode(reasons) == 'rebuild' -%}
        true
    {%- else -%}
        {{ column }} in (select customer_key from {{ ref('int_customers_affected') }}
                         where reason in ('{{ reasons | join("', '") }}'))
    {%- endif -%}
{%- endmacro %}

{#- The digest of the project vars the consumers' rules read: a change recomputes everyone. -#}
{% macro customer_rules_digest() -%}
    md5('{{ tojson([var("needs_discount_threshold")]) }}')
{%- endmacro %}

{#- The digest of the exchange rates and the reporting currency (int_orders_attributed converts by
    them: a corrected rate changes every order in that currency, so it recomputes everyone). -#}
{% macro rates_digest() -%}
    md5('{{ var("reporting_currency") }}' || coalesce(string_agg(row(currency_code, valid_from, valid_until, rate)::text,
                                                  ',' order by currency_code, valid_from), ''))
{%- endmacro %}

{#- The ids of the orders a build computes again in int_orders_attributed (its delta mode): orders
    loaded since the last build that completed the customer-level models (int_customer_inputs_seen),
    the orders of the order lines loaded since, and every order of a shop customer id whose customer
    key changed (int_customers_affected, reason identity). How far that build read is put in as
    literals: a range on the loaded_at indexes the planner can see is small. -#}
{% macro affected_order_ids() -%}
    {%- set seen = customer_state_relation('int_customer_inputs_seen') -%}
    {%- set since = ['-infinity', '-infinity'] -%}
    {%- if execute and seen is not none -%}
        {%- set since = run_query("select " ~ seen_loaded_at(seen, 'orders') ~ "::text, "
                                  ~ seen_loaded_at(seen, 'order_lines') ~ "::text").rows[0] -%}
    {%- endif -%}
    {{ orders_loaded_since(since[0], since[1]) }}
    union
    select orders.order_id
    from {{ ref('stg_sales__orders') }} as orders
    inner join {{ ref('int_identifiers_linked') }} as linked
        on linked.identifier_type = 'shop_customer_id' and linked.identifier_value = orders.customer_id
    where linked.customer_key in (select customer_key from {{ ref('int_customers_affected') }}
                                  where reason = 'identity')
{%- endmacro %}

{#- The ids of the staged orders loaded after `orders_after`, and of the orders of the order lines
    loaded after `lines_after` (timestamps as text): the orders new or changed in staging since
    then. int_orders_attributed and the product pair counts (macros/baskets.sql) start from them. -#}
{% macro orders_loaded_since(orders_after, lines_after) -%}
    select order_id from {{ ref('stg_sales__orders') }} where loaded_at > '{{ orders_after }}'::timestamptz
    union
    select order_id from {{ ref('stg_sales__order_lines') }} where loaded_at > '{{ lines_after }}'::timestamptz
{%- endmacro %}

{#- How far the last build that completed the customer-level models read an incremental staging
    model (`input` of int_customer_inputs_seen: orders, order_lines, web_events), as an expression;
    -infinity when it read none. -#}
{% macro seen_loaded_at(seen, input) -%}
    coalesce((select max(loaded_at) from {{ seen }} where input = '{{ input }}'), '-infinity')
{%- endmacro %}

{#- The pre-hook of int_orders_attributed, in its transaction: empty it on a rebuild (the reasons of
    affected_mode(['identity', 'sales']): a first build, a full refresh, a replaced sales file,
    changed rates or rules); else stage the ids of the orders computed again in the temporary table
    crm360_affected_orders (dropped at commit) and delete their rows and every row of a customer
    key whose identity changed (an order whose customer merged into another key, or was erased,
    leaves its old key). -#}
{% macro clear_affected_orders() -%}
    {%- if not is_incremental() -%}
        select 1
    {%- elif affected_mode(['identity', 'sales']) == 'rebuild' -%}
        delete from {{ this }}
    {%- else -%}
        drop table if exists pg_temp.crm360_affected_orders;
        create temporary table crm360_affected_orders on commit drop as {{ affected_order_ids() }};
        analyze pg_temp.crm360_affected_orders;
        delete from {{ this }} where order_id in (select order_id from pg_temp.crm360_affected_orders);
        delete from {{ this }}
        where customer_key in (select customer_key from {{ ref('int_customers_affected') }}
                               where reason = 'identity')
    {%- endif -%}
{%- endmacro %}

{#- A predicate on an order id column of int_orders_attributed: true on a rebuild, else the orders
    its pre-hook staged. -#}
{% macro affected_orders_filter(column) -%}
    {%- if affected_mode(['identity', 'sales']) == 'rebuild' -%}
        true
    {%- else -%}
        {{ column }} in (select order_id from pg_temp.crm360_affected_orders)
    {%- endif -%}
{%- endmacro %}

{#- A join condition: `shop` (stg_sales__customers) is the shop record of the anchor identifier
    `linked` (int_identifiers_linked), when the anchor is a shop customer id. -#}
{% macro anchor_shop_record(linked, shop) -%}
    {{ linked }}.is_anchor and {{ linked }}.identifier_type = 'shop_customer_id'
    and {{ shop }}.customer_id = {{ linked }}.identifier_value
{%- endmacro %}

{#- The columns of an identifier's state, kept by int_customer_keys_seen and compared with it by
    int_customers_affected (one definition, or the two would differ on every identifier): a digest
    of the identifier (no value), its customer key, when it was first seen, and for an anchor shop
    record (`shop` joined on anchor_shop_record, else null) a digest of its e-mail and phone, what
    int_customers_resolved takes its primary contacts from. -#}
{% macro identifier_state_columns(linked, shop) -%}
    md5({{ linked }}.identifier_id) as identifier_hash,
    {{ linked }}.customer_key,
    {{ linked }}.first_seen_at,
    case when {{ anchor_shop_record(linked, shop) }}
        then md5(coalesce({{ shop }}.email, '') || ' ' || coalesce({{ shop }}.phone_e164, '')) end
        as contacts_digest
{%- endmacro %}
