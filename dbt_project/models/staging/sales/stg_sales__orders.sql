with source as (
    select * from {{ source('sales', 'sales_orders') }}
),

renamed as (
    select
        trim(order_id) as order_id,
        trim(customer_id) as customer_id,
        cast(ordered_at as timestamptz) as ordered_at,
        lower(trim(status)) as order_status,
        upper(coalesce(nullif(trim(currency), ''), 'EUR')) as currency_code,
        lower(nullif(trim(channel), '')) as sales_channel,
        coalesce(cast(nullif(trim(refund_amount), '') as numeric(12, 2)), 0) as refund_amount_eur,
        cast(coalesce(nullif(updated_at, ''), ordered_at) as timestamptz) as updated_at,
        _loaded_at,
        _source_file
    from source
),

latest as (
    select
        *,
        row_number() over (
            partition by order_id order by updated_at desc, _loaded_at desc, _source_file desc
        ) as version_rank
    from renamed
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
        refund_amount_eur,
        updated_at,
        _loaded_at as loaded_at
    from latest
    where version_rank = 1
)

select * from final
