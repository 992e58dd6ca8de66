with source as (
    select * from {{ source('sales', 'sales_order_lines') }}
),

renamed as (
    select
        trim(order_id) as order_id,
        cast(line_number as integer) as line_number,
        trim(product_id) as product_id,
        cast(quantity as integer) as quantity,
        cast(unit_price as numeric(12, 2)) as unit_price_eur,
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
        unit_price_eur,
        cast(quantity * unit_price_eur as numeric(14, 2)) as line_amount_eur
    from latest
    where version_rank = 1
)

select * from final
