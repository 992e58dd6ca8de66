{#- One row per identifier seen in any source, with its customer and the rule
    that linked it. -#}
with identifiers as (
    select * from {{ ref('int_identifiers_linked') }}
),

final as (
    select
        identifier_id,
        identifier_type,
        identifier_value,
        customer_key,
        link_rule
    from identifiers
)

select * from final
