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
