with source as (
    select * from {{ source('sales', 'sales_customers') }}
),

renamed as (
    select
        trim(customer_id) as customer_id,
        nullif(trim(first_name), '') as first_name,
        nullif(trim(last_name), '') as last_name,
        {{ normalize_email('email') }} as email,
        nullif(trim(phone), '') as phone,
        nullif(trim(city), '') as city,
        upper(nullif(trim(country_code), '')) as country_code,
        cast(created_at as timestamptz) as created_at,
        cast(coalesce(nullif(updated_at, ''), created_at) as timestamptz) as updated_at,
        _loaded_at,
        _source_file
    from source
),

latest as (
    -- an export may restate a customer; keep the newest version of each
    select
        *,
        row_number() over (
            partition by customer_id order by updated_at desc, _loaded_at desc, _source_file desc
        ) as version_rank
    from renamed
),

final as (
    select
        customer_id,
        first_name,
        last_name,
        email,
        phone,
        city,
        country_code,
        created_at,
        updated_at,
        _loaded_at as loaded_at
    from latest
    where version_rank = 1
)

select * from final
