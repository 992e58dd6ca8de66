{#- One row per pair of identifiers some record puts together, and the rule that
    does: a shop record's e-mail and phone, a ticket's requester e-mail and the shop
    customer it references, a web visitor's login or the e-mail it gave.
    An edge is used to link customers unless an end is blocked by a guard
    (see int_identity_nodes); node_a/node_b hold the node ids of used edges only,
    which is what the connected-components step reads. -#}
with shop_customers as (
    select * from {{ ref('stg_sales__customers') }}
),

tickets as (
    select * from {{ ref('stg_service__tickets') }}
),

claims as (
    select * from {{ ref('int_web_visitor_claims') }}
),

nodes as (
    select * from {{ ref('int_identity_nodes') }}
),

evidence as (
    select
        'shop_customer_id:' || customer_id as from_identifier_id,
        'email:' || email as to_identifier_id,
        'shop record e-mail' as link_rule,
        created_at as seen_at,
        1 as evidence_count
    from shop_customers
    where email is not null
    union all
    select
        'shop_customer_id:' || customer_id,
        'phone:' || phone_e164,
        'shop record phone',
        created_at,
        1
    from shop_customers
    where phone_e164 is not null
    union all
    select
        'shop_customer_id:' || tickets.customer_id,
        'email:' || tickets.requester_email,
        'ticket requester of shop customer',
        tickets.created_at,
        1
    from tickets
    inner join shop_customers on tickets.customer_id = shop_customers.customer_id
    where tickets.requester_email is not null
    union all
    select
        'visitor_id:' || claims.visitor_id,
        'shop_customer_id:' || claims.claim_value,
        'web login',
        claims.first_seen_at,
        claims.event_count
    from claims
    inner join shop_customers on claims.claim_value = shop_customers.customer_id
    where claims.claim_type = 'shop_customer_id'
    union all
    select
        'visitor_id:' || visitor_id,
        'email:' || claim_value,
        'web e-mail sign-up',
        first_seen_at,
        event_count
    from claims
    where claim_type = 'email'
),

edges as (
    select
        from_identifier_id,
        to_identifier_id,
        link_rule,
        min(seen_at) as first_seen_at,
        sum(evidence_count) as evidence_count
    from evidence
    group by from_identifier_id, to_identifier_id, link_rule
),

final as (
    select
        edges.from_identifier_id,
        edges.to_identifier_id,
        edges.link_rule,
        edges.first_seen_at,
        edges.evidence_count,
        from_node.is_linkable and to_node.is_linkable as is_used,
        coalesce(from_node.blocked_reason, to_node.blocked_reason) as blocked_reason,
        case when from_node.is_linkable and to_node.is_linkable then from_node.node_id end as node_a,
        case when from_node.is_linkable and to_node.is_linkable then to_node.node_id end as node_b
    from edges
    inner join nodes as from_node on edges.from_identifier_id = from_node.identifier_id
    inner join nodes as to_node on edges.to_identifier_id = to_node.identifier_id
)

select * from final
