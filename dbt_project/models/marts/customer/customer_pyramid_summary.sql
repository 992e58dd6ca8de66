{#- One row per pyramid and tier: how many customers it holds and what share
    of revenue they bring. -#}
with pyramid as (
    select * from {{ ref('customer_pyramid') }}
),

by_tier as (
    select
        'activity' as pyramid,
        activity_tier as tier,
        as_of_date,
        count(*) as customers,
        sum(revenue_eur) as revenue_eur
    from pyramid
    group by activity_tier, as_of_date
    union all
    select
        'revenue' as pyramid,
        revenue_tier as tier,
        as_of_date,
        count(*) as customers,
        sum(revenue_eur) as revenue_eur
    from pyramid
    group by revenue_tier, as_of_date
),

final as (
    select
        pyramid,
        tier,
        case tier
            when 'active' then 1 when 'inactive' then 2 when 'prospect' then 3 when 'suspect' then 4
            {%- for t in var('revenue_tiers') %}
            when '{{ t["tier"] }}' then {{ loop.index }}
            {%- endfor %}
            else 99
        end as tier_order,
        as_of_date,
        customers,
        revenue_eur,
        cast(customers::numeric / sum(customers) over (partition by pyramid) as numeric(7, 6))
            as share_of_customers,
        cast(
            coalesce(revenue_eur / nullif(sum(revenue_eur) over (partition by pyramid), 0), 0)
            as numeric(7, 6)
        ) as share_of_revenue
    from by_tier
)

select * from final
