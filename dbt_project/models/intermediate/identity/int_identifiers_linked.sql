{#- One row per identifier (shop customer id, e-mail, web visitor id) with the
    customer it belongs to and the rule that linked it.

    Every customer has an anchor, the identifier its key is derived from:
    the primary shop customer id when there is one (the account, else the oldest
    guest record sharing its e-mail), else the e-mail, else the visitor id.
    customer_key = md5(anchor), so a key stays the same from run to run while
    its anchor exists. -#}
with customers as (
    select * from {{ ref('stg_sales__customers') }}
),

tickets as (
    select * from {{ ref('stg_service__tickets') }}
),

events as (
    select * from {{ ref('stg_web__events') }}
),

shop_primary as (
    -- an account and the guest checkouts made with its e-mail are one customer, anchored
    -- on the account; guest records alone are anchored on the oldest of them
    select distinct on (email)
        email,
        customer_id as primary_customer_id
    from customers
    where email is not null
    order by email, account_type = 'registered' desc, created_at, customer_id
),

shop_anchors as (
    select
        customers.customer_id,
        customers.email,
        'shop_customer_id:' || coalesce(shop_primary.primary_customer_id, customers.customer_id) as anchor
    from customers
    left join shop_primary on customers.email = shop_primary.email
),

shop_emails as (
    select distinct
        email,
        anchor
    from shop_anchors
    where email is not null
),

emails_elsewhere as (
    select requester_email as email from tickets where requester_email is not null
    union
    select email from events where email is not null
),

email_anchors as (
    select
        email,
        anchor,
        'e-mail on shop customer record' as link_rule
    from shop_emails
    union all
    select
        emails_elsewhere.email,
        'email:' || emails_elsewhere.email as anchor,
        'e-mail seen in service or web only' as link_rule
    from emails_elsewhere
    left join shop_emails on emails_elsewhere.email = shop_emails.email
    where shop_emails.email is null
),

visitor_claims as (
    -- events that tell who a visitor is: a login (shop customer id) or a sign-up (e-mail)
    select
        events.visitor_id,
        events.occurred_at,
        events.event_id,
        coalesce(shop_anchors.anchor, email_anchors.anchor) as anchor,
        case
            when shop_anchors.anchor is not null then 'visitor logged in as shop customer'
            else 'visitor gave e-mail on the web'
        end as link_rule,
        case when shop_anchors.anchor is not null then 1 else 2 end as claim_priority
    from events
    left join shop_anchors on events.customer_id = shop_anchors.customer_id
    left join email_anchors on events.email = email_anchors.email
    where coalesce(shop_anchors.anchor, email_anchors.anchor) is not null
),

visitor_anchors as (
    select distinct on (visitor_id)
        visitor_id,
        anchor,
        link_rule
    from visitor_claims
    order by visitor_id, claim_priority, occurred_at, event_id
),

visitors as (
    select distinct visitor_id from events
),

identifiers as (
    select
        'shop_customer_id' as identifier_type,
        customer_id as identifier_value,
        anchor,
        'shop customer record' as link_rule
    from shop_anchors
    union all
    select
        'email' as identifier_type,
        email as identifier_value,
        anchor,
        link_rule
    from email_anchors
    union all
    select
        'visitor_id' as identifier_type,
        visitors.visitor_id as identifier_value,
        coalesce(visitor_anchors.anchor, 'visitor_id:' || visitors.visitor_id) as anchor,
        coalesce(visitor_anchors.link_rule, 'anonymous visitor') as link_rule
    from visitors
    left join visitor_anchors on visitors.visitor_id = visitor_anchors.visitor_id
),

final as (
    select
        identifier_type || ':' || identifier_value as identifier_id,
        identifier_type,
        identifier_value,
        md5(anchor) as customer_key,
        split_part(anchor, ':', 1) as anchor_type,
        substr(anchor, length(split_part(anchor, ':', 1)) + 2) as anchor_value,
        link_rule
    from identifiers
)

select * from final
