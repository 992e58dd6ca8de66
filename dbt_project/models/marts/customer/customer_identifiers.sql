{#- indexes for the BI queries in docs/bi_queries.sql -#}
{{ config(post_hook=["{{ ensure_index(['customer_key']) }}",
           "{{ ensure_index(['identifier_value']) }}"]) }}
{#- One row per identifier seen in any source: the customer it belongs to and the
    rules that linked it, or the guard that kept it from every customer. -#}
with nodes as (
    select * from {{ ref('int_identity_nodes') }}
),

linked as (
    select * from {{ ref('int_identifiers_linked') }}
),

final as (
    select
        nodes.identifier_id,
        nodes.identifier_type,
        nodes.identifier_value,
        linked.customer_key,
        coalesce(linked.is_anchor, false) as is_anchor,
        coalesce(linked.link_rule, 'not linked: ' || nodes.blocked_reason) as link_rule,
        nodes.blocked_reason,
        nodes.first_seen_at
    from nodes
    left join linked on nodes.identifier_id = linked.identifier_id
)

select * from final
