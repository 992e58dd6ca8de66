{#- One row per customer: its tier in the activity and revenue pyramids. -#}
with tiers as (
    select * from {{ ref('int_customers_tiered') }}
),

final as (
    select
        customer_key,
        as_of_date,
        activity_tier,
        revenue_tier,
        revenue_rank,
        cast(revenue as numeric(14, 2)) as revenue
    from tiers
)

select * from final
