-- description: Per uploader: photos uploaded, and the views and likes those photos received (a SQL model).
-- tags: features
-- checks:
--   - unique(user_id)
--   - not_null(user_id, photos)
--   - expression(views >= 0 and likes >= 0)
-- primary_key: user_id
select p.user_id,
       count(distinct p.photo_id) as photos,
       sum(case when e.kind = 'view' then 1 else 0 end) as views,
       sum(case when e.kind = 'like' then 1 else 0 end) as likes
from raw.photos p
left join raw.events e on e.photo_id = p.photo_id
group by p.user_id
