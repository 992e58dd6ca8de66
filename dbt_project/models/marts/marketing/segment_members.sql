{#- One row per segment and member: the segments crm360 reads from segments.yml
    (passed in the var `segments`, each filter already validated and re-written),
    applied to customer_360 or to today's call list. Contact fields are masked for
    customers without marketing consent. -#}
{{ config(post_hook=["{{ create_segment_views() }}",
                     "{{ ensure_index(['segment_name', 'customer_key']) }}"]) }}
{%- set segments = var('segments') %}
-- depends_on: {{ ref('customer_call_list') }}
with customers as (
    select * from {{ ref('customer_360') }}
),

call_list as (
    select * from {{ ref('customer_call_list') }}
),

members as (
    {%- for s in segments %}
    select distinct '{{ s.name }}'::text as segment_name, customer_key
    from {{ 'customers' if s.source == 'customer_360' else 'call_list' }}
    where {{ s.filter_sql }}
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- else %}
    select null::text as segment_name, null::text as customer_key
    where false
    {%- endfor %}
),

final as (
    select
        members.segment_name,
        customers.customer_key,
        {{ mask_unless_consented('customers.full_name', 'name', 'customers.has_marketing_consent') }} as full_name,
        {{ mask_unless_consented('customers.email', 'email', 'customers.has_marketing_consent') }} as email,
        {{ mask_unless_consented('customers.phone', 'phone', 'customers.has_marketing_consent') }} as phone,
        customers.has_marketing_consent,
        customers.city,
        customers.region,
        customers.lifecycle_stage,
        customers.activity_tier,
        customers.revenue_tier,
        customers.value_tier,
        customers.revenue,
        customers.predicted_clv,
        customers.last_order_at,
        customers.last_contact_at
    from members
    inner join customers on members.customer_key = customers.customer_key
)

select * from final
