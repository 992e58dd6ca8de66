{#- One row per customer with enough purchases to tell (var('needs_min_purchases'))
    and their needs type, where the data supports one:
      price_sensitive  at least needs_discounted_share of spend bought at a discount;
      service_driven   at least needs_contacts_per_purchase inbound service contacts per purchase;
      product_driven   at least needs_category_share of spend in one category;
      mixed            none of these.
    When several hold, the strongest signal relative to its threshold wins. -#}
with orders as (
    select * from {{ ref('int_customer_orders_aggregated') }}
),

categories as (
    select * from {{ ref('int_customer_categories_aggregated') }}
),

tickets as (
    select * from {{ ref('int_customer_tickets_aggregated') }}
),

signals as (
    select
        orders.customer_key,
        coalesce(categories.discounted_share, 0) / {{ var('needs_discounted_share') }} as price_signal,
        coalesce(tickets.tickets, 0)::numeric / orders.orders_completed / {{ var('needs_contacts_per_purchase') }}
            as service_signal,
        coalesce(categories.favourite_category_share, 0) / {{ var('needs_category_share') }} as product_signal
    from orders
    left join categories on orders.customer_key = categories.customer_key
    left join tickets on orders.customer_key = tickets.customer_key
    where orders.orders_completed >= {{ var('needs_min_purchases') }}
),

final as (
    select
        customer_key,
        case
            when greatest(price_signal, service_signal, product_signal) < 1 then 'mixed'
            when price_signal >= service_signal and price_signal >= product_signal then 'price_sensitive'
            when service_signal >= product_signal then 'service_driven'
            else 'product_driven'
        end as needs_type,
        cast(price_signal as numeric(8, 3)) as price_signal,
        cast(service_signal as numeric(8, 3)) as service_signal,
        cast(product_signal as numeric(8, 3)) as product_signal
    from signals
)

select * from final
