-- Every shop record and every staged visitor id belong to exactly one customer_360
-- row, and the pyramids of the current snapshot count every customer once.
with expected as (
    select 'shop records' as what, count(*) as n from {{ ref('stg_sales__customers') }}
    union all
    select 'visitors', count(*) from {{ ref('int_web_visitors_aggregated') }}
),

reported as (
    select 'shop records' as what, sum(shop_record_count) as n from {{ ref('customer_360') }}
    union all
    select 'visitors', sum(visitor_count) from {{ ref('customer_360') }}
),

pyramids as (
    select pyramid, sum(customers) as n
    from {{ ref('customer_pyramid_summary') }}
    where is_current
    group by pyramid
),

mismatches as (
    select expected.what, expected.n as expected_n, reported.n as reported_n
    from expected
    inner join reported on expected.what = reported.what
    where expected.n <> reported.n
    union all
    select 'pyramid ' || pyramids.pyramid, (select count(*) from {{ ref('customer_360') }}), pyramids.n
    from pyramids
    where pyramids.n <> (select count(*) from {{ ref('customer_360') }})
)

select * from mismatches
