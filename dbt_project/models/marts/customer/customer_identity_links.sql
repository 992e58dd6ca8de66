{#- One row per link between two identifiers that some record made: which
    identifiers, by which rule, on how much evidence, and whether it joined them into
    one customer or a guard stopped it (and why). Together with customer_identifiers
    it explains every customer: its identifiers are the connected components of the
    used links. -#}
with edges as (
    select * from {{ ref('int_identity_edges') }}
),

identifiers as (
    select * from {{ ref('int_identifiers_linked') }}
),

final as (
    select
        edges.from_identifier_id,
        edges.to_identifier_id,
        edges.link_rule,
        cast(edges.evidence_count as bigint) as evidence_count,
        edges.first_seen_at,
        edges.is_used,
        edges.blocked_reason,
        case when edges.is_used then identifiers.customer_key end as customer_key
    from edges
    left join identifiers on edges.from_identifier_id = identifiers.identifier_id
)

select * from final
