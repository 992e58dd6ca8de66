{#- One row per department and customer group ('contacted', 'not_contacted'): how
    existing customers' net spending changed after the department dealt with them,
    against comparable buyers it never dealt with (rule 7 of MISSION.md: marketing,
    sales and other departments change customer behaviour).

    Departments whose contacts the data holds, each with its reference time:
    - sales_follow_up: outbound follow-up calls that reached the customer, the first
      such call (customer_follow_up_effect shows this department's figures);
    - service: inbound service tickets (follow-up calls aside) that were resolved, the
      first resolution; a customer with any inbound ticket is no control.
    Marketing's segment exports are logged without their members (audit.segment_exports
    holds the segment and a row count), so who marketing reached is not in the data and
    marketing has no row.
    Groups, windows (var('follow_up_window_days'), var('follow_up_min_window_days'))
    and existing customers as in customer_follow_up_effect: macro contact_effect_ctes. -#}
{%- set window_days = var('follow_up_window_days') -%}
{%- set min_window_days = var('follow_up_min_window_days') -%}
with orders as (
    select * from {{ ref('int_orders_attributed') }}
),

tickets as (
    select * from {{ ref('int_tickets_attributed') }}
),

order_facts as (
    select
        customer_key,
        ordered_at,
        ordered_date,
        is_purchase,
        net_revenue
    from orders
),

department_tickets as (
    select
        case when is_follow_up_call then 'sales_follow_up' else 'service' end as department,
        customer_key,
        case
            when is_follow_up_call and call_outcome = 'reached' then created_at
            when not is_follow_up_call then solved_at
        end as reached_at
    from tickets
    where customer_key is not null
        and (is_follow_up_call or direction = 'inbound')
),

touched as (
    select distinct
        department,
        customer_key
    from department_tickets
),

contacts as (
    select
        department,
        customer_key,
        min(reached_at) as reference_at
    from department_tickets
    where reached_at is not null
    group by department, customer_key
),

{{ contact_effect_ctes(window_days, min_window_days) }}

by_group as (
    select
        department,
        customer_group,
        count(*) as customers,
        sum(spend_before) as spend_before,
        sum(spend_after) as spend_after,
        avg(window_days) as avg_window_days
    from customer_spend
    where purchases_before > 0
    group by department, customer_group
),

groups as (
    select *
    from (
        values
        (1, 'sales_follow_up', 'outbound follow-up call that reached the customer'),
        (2, 'service', 'inbound service ticket resolved')
    ) as departments (department_order, department, contact)
    cross join (values (1, 'contacted'), (2, 'not_contacted')) as customer_groups (group_order, customer_group)
),

final as (
    select
        groups.department,
        groups.department_order,
        groups.contact,
        groups.customer_group,
        groups.group_order,
        {{ as_of_date() }} as as_of_date,
        coalesce(by_group.customers, 0) as customers,
        cast(coalesce(by_group.spend_before, 0) as numeric(16, 2)) as spend_before,
        cast(coalesce(by_group.spend_after, 0) as numeric(16, 2)) as spend_after,
        cast(100 * (by_group.spend_after - by_group.spend_before)
            / nullif(by_group.spend_before, 0) as numeric(12, 2)) as change_pct,
        cast((by_group.spend_after - by_group.spend_before) / by_group.customers as numeric(14, 2))
            as avg_change_per_customer,
        cast(by_group.avg_window_days as numeric(6, 1)) as avg_window_days
    from groups
    left join by_group
        on groups.department = by_group.department
        and groups.customer_group = by_group.customer_group
)

select * from final
