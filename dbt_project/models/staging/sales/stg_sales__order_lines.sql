{{ config(
    materialized='incremental',
    unique_key='order_line_id',
    incremental_strategy='delete+insert',
    pre_hook="{{ clear_for_rebuild('sales') }}",
    post_hook=["{{ ensure_index(['order_line_id']) }}", "{{ ensure_index(['order_id']) }}",
               "{{ ensure_index(['loaded_at']) }}"],
) }}
{#- One row per order line, its newest version. Order lines are a large source, so
    this is a table built incrementally: a build reads the raw rows loaded since the
    last one, and a line loaded again replaces the version built before; a day that replaced
    a file loaded before rebuilds it from all lines. Only rows of gated loads are read. -#}
with source as (
    select * from {{ source('sales', 'sales_order_lines') }}
    where {{ loaded_since_last_build('_loaded_at', source_name='sales') }}
        and {{ gated('sales', source('sales', 'sales_order_lines')) }}
),

renamed as (
    select
        trim(order_id) as order_id,
        cast(line_number as integer) as line_number,
        trim(product_id) as product_id,
        cast(quantity as integer) as quantity,
        cast(unit_price as numeric(12, 2)) as unit_price,
        _loaded_at,
        _source_file
    from source
),

latest as (
    select
        *,
        row_number() over (
            partition by order_id, line_number order by _loaded_at desc, _source_file desc
        ) as version_rank
    from renamed
),

final as (
    select
        order_id || '-' || line_number as order_line_id,
        order_id,
        line_number,
        product_id,
        quantity,
        unit_price,
        cast(quantity * unit_price as numeric(14, 2)) as line_amount,
        _loaded_at as loaded_at
    from latest
    where version_rank = 1
)

select * from final
