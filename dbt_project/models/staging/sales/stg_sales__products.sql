with source as (
    select * from {{ source('sales', 'sales_products') }}
    where {{ gated('sales', source('sales', 'sales_products')) }}
),

renamed as (
    select
        trim(product_id) as product_id,
        nullif(trim(product_name), '') as product_name,
        lower(nullif(trim(category), '')) as category,
        cast(list_price as numeric(12, 2)) as list_price,
        _loaded_at,
        _source_file
    from source
),

latest as (
    select
        *,
        row_number() over (
            partition by product_id order by _loaded_at desc, _source_file desc
        ) as version_rank
    from renamed
),

final as (
    select
        product_id,
        product_name,
        category,
        list_price
    from latest
    where version_rank = 1
)

select * from final
