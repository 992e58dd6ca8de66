{{ config(
    materialized='incremental',
    unique_key='order_id',
    incremental_strategy='delete+insert',
    pre_hook="{{ clear_for_rebuild('sales') }}",
    post_hook=["{{ ensure_index(['order_id']) }}", "{{ ensure_index(['customer_id']) }}",
               "{{ ensure_index(['loaded_at']) }}"],
) }}
{#- One row per order, its newest version (a return or refund arrives as a later
    version of the order). A table built incrementally: a build reads the raw rows
    loaded since the last one and keeps, per order, the newest of those and the
    version built before; a day that replaced a file loaded before rebuilds it from all
    orders (macros/incremental.sql). Only rows of gated loads are read. -#}
with source as (
    select * from {{ source('sales', 'sales_orders') }}
    where {{ loaded_since_last_build('_loaded_at', source_name='sales') }}
        and {{ gated('sales', source('sales', 'sales_orders')) }}
),

renamed as (
    select
        trim(order_id) as order_id,
        {{ normalize_shop_customer_id('customer_id') }} as customer_id,
        cast(ordered_at as timestamptz) as ordered_at,
        lower(trim(status)) as order_status,
        upper(coalesce(nullif(trim(currency), ''), '{{ var("reporting_currency") }}')) as currency_code,
        lower(nullif(trim(channel), '')) as sales_channel,
        coalesce(cast(nullif(trim(refund_amount), '') as numeric(12, 2)), 0) as refund_amount,  -- in currency_code
        cast(coalesce(nullif(updated_at, ''), ordered_at) as timestamptz) as updated_at,
        _loaded_at as loaded_at,
        _source_file as source_file
    from source
),

{% if is_incremental() %}
versions as (
    -- a late file may restate an older version: compare with the one already built
    select * from renamed
    union all
    select
        built.order_id,
        built.customer_id,
        built.ordered_at,
        built.order_status,
        built.currency_code,
        built.sales_channel,
        built.refund_amount,
        built.updated_at,
        built.loaded_at,
        built.source_file
    from {{ this }} as built
    where built.order_id in (select order_id from renamed)
),
{% else %}
versions as (
    select * from renamed
),
{% endif %}

latest as (
    select
        *,
        row_number() over (
            partition by order_id order by updated_at desc, loaded_at desc, source_file desc
        ) as version_rank
    from versions
),

final as (
    select
        order_id,
        customer_id,
        ordered_at,
        cast(ordered_at at time zone 'UTC' as date) as ordered_date,
        order_status,
        order_status in ('completed', 'partially_returned') as is_purchase,
        currency_code,
        sales_channel,
        refund_amount,
        updated_at,
        loaded_at,
        source_file
    from latest
    where version_rank = 1
)

select * from final
