{#- One row per resolved customer (a real person or company, or an anonymous
    visitor), with the identifiers linked to it. -#}
with identifiers as (
    select * from {{ ref('int_identifiers_linked') }}
),

final as (
    select
        customer_key,
        min(anchor_type) as anchor_type,
        min(anchor_value) as anchor_value,
        -- the primary shop record: the anchor (an account and its guest checkouts share it)
        case when min(anchor_type) = 'shop_customer_id' then min(anchor_value) end as shop_customer_id,
        count(*) filter (where identifier_type = 'shop_customer_id') as shop_record_count,
        case
            when min(anchor_type) = 'email' then min(anchor_value)
            else min(identifier_value) filter (where identifier_type = 'email')
        end as primary_email,
        count(*) filter (where identifier_type = 'email') as email_count,
        count(*) filter (where identifier_type = 'visitor_id') as visitor_count,
        count(*) as identifier_count,
        array_agg(identifier_id order by identifier_id) as identifiers
    from identifiers
    group by customer_key
)

select * from final
