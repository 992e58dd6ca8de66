{#- One row per buying customer with recency, frequency and monetary value (RFM)
    as of var('as_of_date') and a 1-5 score for each: 5 is the most recent, the most
    frequent, the highest spending fifth of buyers. Scores come from the cumulative
    distribution, so customers with equal values always get equal scores. -#}
with orders as (
    select * from {{ ref('int_customer_orders_aggregated') }}
),

buyers as (
    select
        customer_key,
        {{ as_of_date() }} - last_order_date as recency_days,
        orders_completed as frequency,
        revenue as monetary
    from orders
    where orders_completed > 0
),

scored as (
    select
        customer_key,
        recency_days,
        frequency,
        monetary,
        cast(ceil(5 * cume_dist() over (order by recency_days desc)) as integer) as recency_score,
        cast(ceil(5 * cume_dist() over (order by frequency)) as integer) as frequency_score,
        cast(ceil(5 * cume_dist() over (order by monetary)) as integer) as monetary_score
    from buyers
),

final as (
    select
        customer_key,
        recency_days,
        frequency,
        monetary,
        recency_score,
        frequency_score,
        monetary_score,
        recency_score::text || frequency_score::text || monetary_score::text as rfm_cell,
        {{ rfm_segment('recency_score', 'frequency_score', 'monetary_score') }} as rfm_segment
    from scored
)

select * from final
