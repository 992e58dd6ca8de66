{#- How existing customers' net spending changed after a contact, against comparable
    customers without one, per department: customer_contact_effect (every department whose
    contacts the data holds), whose follow-up department customer_follow_up_effect reads.

    Emits CTEs (continue the caller's `with`; end with a comma) reading three CTEs the
    caller defines before:
    - order_facts (customer_key, ordered_at, ordered_date, is_purchase, net_revenue);
    - contacts (department, customer_key, reference_at): customers the department
      reached, one row each, reference_at the first such contact;
    - touched (department, customer_key): every customer the department dealt with,
      reached or not; they are not clean controls.
    and defines customer_spend (department, customer_key, customer_group, window_days,
    purchases_before, spend_before, spend_after).

    Per department: 'contacted' = the customers of contacts; 'not_contacted' = buyers
    not in touched, each given one contacted customer's reference time (a stable hash
    of the customer key picks it), so both groups are measured over the same calendar
    dates. Spending is compared over window_days before and after the reference time,
    both windows shortened to the order history held before the reference date;
    customers whose window is shorter than min_window_days, or whose after-window has
    not fully elapsed by the as-of date, are left out. -#}
{% macro contact_effect_ctes(window_days, min_window_days) -%}
purchases as (
    select
        customer_key,
        ordered_at,
        net_revenue
    from order_facts
    where is_purchase
),

history as (
    select min(ordered_date) as history_start_date
    from order_facts
),

{#- each department's reference times in pool order (by time, then customer key), as one array -#}
pool as materialized (
    select
        department,
        array_agg(reference_at order by reference_at, customer_key) as reference_times
    from contacts
    group by department
),

{#- the pools' sizes apart from the arrays, which must not travel with every buyer row -#}
pool_size as materialized (
    select
        department,
        cardinality(reference_times) as pool_size
    from pool
),

buyers as (
    select distinct customer_key
    from purchases
),

{#- A not-contacted buyer's draw: a position in the pool from a hash of the key, computed once per
    buyer (materialized), then looked up in the pool's array by a subquery that returns the one
    time. Both shapes tried before went wrong on a few hundred thousand buyers, because the planner
    cannot see how many rows these CTEs hold: joined to a numbered pool, the draw was evaluated as
    a join filter on every buyer and contact pair (minutes); with the array joined to every buyer
    row, the rows were sorted with their copy of a 50,000-element array and spilled gigabytes. -#}
uncontacted as materialized (
    select
        pool_size.department,
        buyers.customer_key,
        1 + mod(('x' || substr(md5(buyers.customer_key), 1, 7))::bit(28)::int, pool_size.pool_size) as pool_position
    from buyers
    cross join pool_size
    left join touched
        on pool_size.department = touched.department
        and buyers.customer_key = touched.customer_key
    where touched.customer_key is null
),

uncontacted_drawn as (
    select
        department,
        customer_key,
        (select pool.reference_times[uncontacted.pool_position] from pool
         where pool.department = uncontacted.department) as reference_at
    from uncontacted
),

subjects as (
    select
        department,
        customer_key,
        'contacted' as customer_group,
        reference_at
    from contacts
    union all
    select
        department,
        customer_key,
        'not_contacted' as customer_group,
        reference_at
    from uncontacted_drawn
),

windowed as (
    select
        subjects.department,
        subjects.customer_key,
        subjects.customer_group,
        subjects.reference_at,
        least(
            {{ window_days }},
            (subjects.reference_at at time zone 'UTC')::date - history.history_start_date
        ) as window_days
    from subjects
    cross join history
),

eligible as (
    select
        department,
        customer_key,
        customer_group,
        reference_at,
        window_days,
        reference_at - make_interval(days => window_days) as window_start_at,
        reference_at + make_interval(days => window_days) as window_end_at
    from windowed
    where window_days >= {{ min_window_days }}
        and reference_at + make_interval(days => window_days)
        <= cast({{ as_of_date() }} as timestamp) at time zone 'UTC'
),

customer_spend as (
    select
        eligible.department,
        eligible.customer_key,
        eligible.customer_group,
        eligible.window_days,
        count(purchases.ordered_at) filter (where purchases.ordered_at < eligible.reference_at)
            as purchases_before,
        coalesce(sum(purchases.net_revenue) filter (where purchases.ordered_at < eligible.reference_at), 0)
            as spend_before,
        coalesce(sum(purchases.net_revenue) filter (where purchases.ordered_at >= eligible.reference_at), 0)
            as spend_after
    from eligible
    left join purchases
        on eligible.customer_key = purchases.customer_key
        and purchases.ordered_at >= eligible.window_start_at
        and purchases.ordered_at < eligible.window_end_at
    group by eligible.department, eligible.customer_key, eligible.customer_group, eligible.window_days
),
{%- endmacro %}
