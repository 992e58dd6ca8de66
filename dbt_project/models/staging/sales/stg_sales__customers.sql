with source as (
    select * from {{ source('sales', 'sales_customers') }}
    where {{ gated('sales', source('sales', 'sales_customers')) }}
),

renamed as (
    select
        {{ normalize_shop_customer_id('customer_id') }} as customer_id,
        coalesce(lower(nullif(trim(account_type), '')), 'registered') as account_type,
        nullif(trim(first_name), '') as first_name,
        nullif(trim(last_name), '') as last_name,
        {{ normalize_email('email') }} as email,
        nullif(trim(phone), '') as phone_as_given,
        {{ normalize_phone('phone', 'country_code') }} as phone_e164,
        lower(nullif(trim(gender), '')) as gender,
        cast(nullif(trim(birth_year), '') as integer) as birth_year,
        lower(nullif(trim(income_band), '')) as income_band,
        lower(nullif(trim(occupation), '')) as occupation,
        nullif(trim(city), '') as city,
        nullif(trim(region), '') as region,
        upper(nullif(trim(country_code), '')) as country_code,
        lower(nullif(trim(acquisition_channel), '')) as acquisition_channel,
        coalesce(cast(nullif(trim(marketing_consent), '') as boolean), false) as has_marketing_consent,
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
        account_type,
        first_name,
        last_name,
        email,
        phone_as_given,
        phone_e164,
        gender,
        birth_year,
        income_band,
        occupation,
        city,
        region,
        country_code,
        acquisition_channel,
        has_marketing_consent,
        created_at,
        updated_at,
        _loaded_at as loaded_at
    from latest
    where version_rank = 1
)

select * from final
