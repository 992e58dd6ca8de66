{#- One row per segment defined in segments.yml: its definition, version and size
    as of the run date (0 when nobody matches). -#}
{%- set segments = var('segments') %}
with definitions as (
    {%- for s in segments %}
    select
        '{{ s.name }}'::text as segment_name,
        '{{ s.description | replace("'", "''") }}'::text as description,
        '{{ s.source }}'::text as source_model,
        '{{ s.filter_sql | replace("'", "''") }}'::text as filter_sql,
        '{{ s.version }}'::text as version
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- else %}
    select
        null::text as segment_name,
        null::text as description,
        null::text as source_model,
        null::text as filter_sql,
        null::text as version
    where false
    {%- endfor %}
),

members as (
    select * from {{ ref('segment_members') }}
),

sizes as (
    select
        segment_name,
        count(*) as customers,
        count(*) filter (where has_marketing_consent) as contactable_customers
    from members
    group by segment_name
),

final as (
    select
        definitions.segment_name,
        definitions.description,
        definitions.source_model,
        definitions.filter_sql,
        definitions.version,
        coalesce(sizes.customers, 0)::bigint as customers,
        coalesce(sizes.contactable_customers, 0)::bigint as contactable_customers,
        {{ as_of_date() }} as as_of_date
    from definitions
    left join sizes on definitions.segment_name = sizes.segment_name
)

select * from final
