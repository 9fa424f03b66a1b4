"""Deterministic, realistic demo data, generated set-based in PostgreSQL.

Every random choice is a hash of (row id, seed, salt) — `hashint8extended` — so the same size and seed give
the same data whatever the execution order, and a million customers with five million orders and ten million
events are a handful of INSERT … SELECT statements, not a Python loop. Secondary indexes and foreign keys of
the loaded tables are dropped for the load and rebuilt from their exact definitions afterwards.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.db import connection, transaction

logger = logging.getLogger(__name__)

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢"
GIVEN = "芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红梅琳婷雪颖欣怡佳琪晨宇浩然子涵梓轩诗雨思彤一诺可馨嘉怡雅"
CITIES = (
    ["上海"] * 14 + ["北京"] * 12 + ["杭州"] * 8 + ["深圳"] * 9 + ["广州"] * 8 + ["成都"] * 7 + ["南京"] * 5
    + ["武汉"] * 5 + ["苏州"] * 4 + ["西安"] * 4 + ["重庆"] * 5 + ["长沙"] * 3 + ["天津"] * 3 + ["宁波"] * 2
    + ["厦门"] * 2 + ["青岛"] * 2 + ["郑州"] * 3 + ["合肥"] * 2 + ["昆明"] * 1 + ["沈阳"] * 1
)  # fmt: skip
OCCUPATIONS = ["白领", "教师", "医护", "自由职业", "学生", "全职妈妈", "公务员", "设计师", "工程师", "销售", "个体经营"]
SKIN_TYPES = ["油性", "干性", "混合性", "敏感性", "中性"]
MEMBER_LEVELS = ["普通", "银卡", "金卡", "黑卡"]
CHANNELS = [
    ("store-qr", "门店二维码", "store_qr", 18),
    ("guide-invite", "导购邀请", "guide_invite", 22),
    ("ads-wechat", "朋友圈广告", "ads", 8),
    ("ads-douyin", "抖音信息流", "ads", 6),
    ("content-article", "公众号文章", "content", 9),
    ("mp-official", "公众号", "platform", 10),
    ("miniprogram", "小程序商城", "platform", 12),
    ("xiaohongshu", "小红书", "platform", 5),
    ("referral", "老带新", "referral", 7),
    ("live-stream", "直播间", "content", 3),
]
# (category, consumption cycle in days, [(name, price)])
CATALOG = [
    ("面膜", 30, [("玻尿酸补水面膜", 99), ("积雪草修护面膜", 129), ("清洁泥膜", 89), ("睡眠面膜", 119)]),
    ("精华", 60, [("烟酰胺精华", 299), ("维C亮肤精华", 339), ("抗皱紧致精华", 459), ("寡肽修护精华", 389)]),
    ("洁面", 45, [("氨基酸洁面乳", 79), ("控油洁面啫喱", 69), ("温和卸妆水", 89)]),
    ("面霜", 60, [("保湿面霜", 199), ("修护霜", 239), ("眼霜", 269)]),
    ("防晒", 45, [("清爽防晒乳", 139), ("户外防晒喷雾", 109)]),
    ("洗发水", 60, [("控油洗发水", 69), ("防脱洗发水", 119), ("修护护发素", 79)]),
    ("沐浴", 60, [("香氛沐浴露", 59), ("身体乳", 89)]),
    ("母婴", 30, [("婴儿润肤乳", 89), ("宝宝洗发沐浴二合一", 69), ("孕妇妊娠霜", 219)]),
    ("保健", 30, [("胶原蛋白饮", 268), ("益生菌", 198), ("复合维生素", 158)]),
    ("套装", 90, [("新客体验装", 39), ("节日礼盒", 599), ("旅行套装", 149)]),
]
GROUP_TYPES = ["宝妈群", "新客群", "会员群", "护肤交流群", "福利群"]
EVENT_TYPES = [  # (type, weight)
    ("content_view", 38), ("page_view", 20), ("reply", 10), ("group_message", 10), ("cart_add", 8),
    ("share", 5), ("coupon_claim", 5), ("group_join", 2), ("live_view", 2),
]  # fmt: skip
ARTICLES = [
    ("成分党必看：烟酰胺的正确用法", "成分"), ("孕期护肤安全指南", "安全"), ("敏感肌修护三步走", "护肤教程"),
    ("防晒到底要不要天天涂", "护肤教程"), ("面膜一周敷几次才合适", "护肤教程"), ("宝宝洗护用品怎么选", "安全"),
    ("维C精华与果酸能一起用吗", "成分"), ("秋冬换季保湿攻略", "护肤教程"), ("门店会员日福利预告", "活动"),
]  # fmt: skip
LOADED_TABLES = [
    "customers_customer", "customers_identity", "customers_relationship", "customers_order", "customers_orderline",
    "customers_event", "customers_groupmembership", "customers_consent", "customers_note",
]  # fmt: skip
SEEDED_TABLES = [*LOADED_TABLES, "customers_communitygroup", "customers_product", "customers_staff",
                 "customers_channel", "customers_transfer", "customers_customermerge",
                 "customers_domainevent"]  # fmt: skip


# Demo steps of the apps above customers (tags, segments…), registered in their AppConfig.ready() and run by
# `setup_demo` after the customers are seeded: each takes no arguments and returns a line to print.
DEMO_STEPS: dict[str, Callable[[], str]] = {}


def register_demo_step(name: str, step: Callable[[], str]) -> None:
    DEMO_STEPS[name] = step


@dataclass(frozen=True)
class Sizes:
    customers: int
    staff: int
    groups: int

    @classmethod
    def for_customers(cls, n: int) -> "Sizes":
        return cls(customers=n, staff=max(5, n // 2000), groups=max(3, n // 500))


def _array(values: list[str]) -> str:
    quoted = ",".join("'" + v.replace("'", "''") + "'" for v in values)
    return f"ARRAY[{quoted}]::text[]"


def _weighted(values: list[tuple[str, int]]) -> list[str]:
    return [value for value, weight in values for _ in range(weight)]


class _Generator:
    def __init__(self, sizes: Sizes, seed: int, progress: Callable[[str], None]) -> None:
        self.sizes = sizes
        self.seed = seed
        self.progress = progress

    def r(self, expr: str, salt: int) -> str:
        """A deterministic uniform number in [0, 1) from a row expression and a salt."""
        return f"((hashint8extended(({expr})::bigint, {self.seed * 1000 + salt}) & 2147483647)::float8 / 2147483648.0)"

    def pick(self, array_sql: str, expr: str, salt: int) -> str:
        return f"({array_sql})[1 + floor({self.r(expr, salt)} * cardinality({array_sql}))::int]"

    def run(self, label: str, sql: str, params: list | None = None) -> None:
        started = time.monotonic()
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.rowcount
        self.progress(f"  {label:<28} {rows:>11,} rows  {time.monotonic() - started:6.1f} s")


def seed_demo(*, customers: int, seed: int = 42, progress: Callable[[str], None] = logger.info) -> dict[str, int]:
    """Replace the customers app's data with `customers` generated customers; returns the row counts.

    One transaction: a failed seed leaves the database as it was.
    """
    sizes = Sizes.for_customers(customers)
    g = _Generator(sizes, seed, progress)
    started = time.monotonic()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL work_mem = '256MB'")
        cursor.execute("SET LOCAL maintenance_work_mem = '1GB'")
        cursor.execute("SET LOCAL synchronous_commit = off")
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # TRUNCATE refuses tables with pending deferred checks
        cursor.execute(f"TRUNCATE {', '.join(SEEDED_TABLES)} RESTART IDENTITY CASCADE")
        saved = _drop_indexes_and_foreign_keys(cursor)
        _reference_data(g)
        _customers(g)
        _identities_and_relationships(g)
        _groups(g)
        _orders(g)
        _events(g)
        _finishing(g)
        _restore_indexes_and_foreign_keys(cursor, saved, progress)
        for table in SEEDED_TABLES:
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), coalesce(max(id), 0) + 1, false) FROM {table}"
            )
        counts = {}
        for table in SEEDED_TABLES:
            cursor.execute(f"SELECT count(*) FROM {table}")
            counts[table.removeprefix("customers_")] = cursor.fetchone()[0]
    with connection.cursor() as cursor:
        for table in LOADED_TABLES:
            cursor.execute(f"ANALYZE {table}")
    progress(f"seeded in {time.monotonic() - started:.1f} s")
    return counts


def _drop_indexes_and_foreign_keys(cursor) -> list[str]:
    """Drop secondary indexes, unique constraints and foreign keys of the loaded tables; return their DDL."""
    tables = ",".join(f"'{t}'" for t in LOADED_TABLES)
    cursor.execute(
        f"""
        SELECT 'ALTER TABLE ' || conrelid::regclass || ' ADD CONSTRAINT ' || quote_ident(conname) || ' '
               || pg_get_constraintdef(oid), conrelid::regclass::text, conname, contype
        FROM pg_constraint
        WHERE conrelid::regclass::text IN ({tables}) AND contype IN ('f', 'u')
        ORDER BY contype DESC
        """  # unique constraints first: foreign keys may need them
    )
    constraints = cursor.fetchall()
    cursor.execute(
        f"""
        SELECT pg_get_indexdef(i.indexrelid), i.indexrelid::regclass::text
        FROM pg_index i
        WHERE i.indrelid::regclass::text IN ({tables}) AND NOT i.indisprimary
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
        """
    )
    indexes = cursor.fetchall()
    # Foreign keys from other tables into the loaded ones would block dropping their unique indexes: none
    # point at a unique constraint here (all reference primary keys, which stay).
    for _ddl, table, name, _kind in sorted(constraints, key=lambda c: c[3]):  # 'f' before 'u'
        cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for _ddl, name in indexes:
        cursor.execute(f"DROP INDEX {name}")
    unique = [ddl for ddl, _t, _n, kind in constraints if kind == "u"]
    foreign = [ddl for ddl, _t, _n, kind in constraints if kind == "f"]
    return [ddl for ddl, _name in indexes] + unique + foreign


def _restore_indexes_and_foreign_keys(cursor, ddl: list[str], progress: Callable[[str], None]) -> None:
    started = time.monotonic()
    for statement in ddl:
        cursor.execute(statement)
    progress(f"  {'indexes and foreign keys':<28} {len(ddl):>11,} built {time.monotonic() - started:6.1f} s")


def _reference_data(g: _Generator) -> None:
    with connection.cursor() as cursor:
        for i, (code, name, kind, _weight) in enumerate(CHANNELS, start=1):
            cursor.execute(
                "INSERT INTO customers_channel (id, code, name, kind, created_at) VALUES (%s, %s, %s, %s, now())",
                [i, code, name, kind],
            )
        product_id = 0
        for c, (category, cycle, items) in enumerate(CATALOG):
            for n, (name, price) in enumerate(items):
                for size, factor in (("", 1.0), (" 家庭装", 1.8)):
                    product_id += 1
                    cursor.execute(
                        "INSERT INTO customers_product (id, sku, name, category, price, consumption_cycle_days,"
                        " is_active, created_at) VALUES (%s, %s, %s, %s, %s, %s, true, now())",
                        [product_id, f"P{c:02d}{n:02d}{'F' if size else ''}", name + size, category,
                         round(price * factor), round(cycle * factor)],
                    )  # fmt: skip
    staff = g.sizes.staff
    g.run(
        "staff",
        f"""
        INSERT INTO customers_staff (id, name, wecom_userid, department, is_active, created_at)
        SELECT i, {g.pick(_array(list(SURNAMES)), "i", 1)} || {g.pick(_array(list(GIVEN)), "i", 2)}
                  || CASE WHEN {g.r("i", 3)} < 0.5 THEN {g.pick(_array(list(GIVEN)), "i", 4)} ELSE '' END,
               'staff' || lpad(i::text, 4, '0'),
               {g.pick(_array(["华东大区", "华北大区", "华南大区", "西南大区", "线上运营部"]), "i", 5)},
               {g.r("i", 6)} > 0.05, now() - interval '800 days'
        FROM generate_series(1, {staff}) AS i
        """,
    )


def _customers(g: _Generator) -> None:
    channel_weights = _weighted([(str(i), w) for i, (_c, _n, _k, w) in enumerate(CHANNELS, start=1)])
    levels = _array(_weighted(list(zip(MEMBER_LEVELS, [60, 25, 12, 3], strict=True))))
    staff = g.sizes.staff
    g.run(
        "customers",
        f"""
        INSERT INTO customers_customer (id, name, gender, birthday, city, occupation, phone, email, time_zone,
            attributes, source_channel_id, owner_id, merged_into_id, first_seen_at, last_seen_at, created_at,
            updated_at)
        SELECT i,
            {g.pick(_array(list(SURNAMES)), "i", 10)} || {g.pick(_array(list(GIVEN)), "i", 11)}
                || CASE WHEN {g.r("i", 12)} < 0.65 THEN {g.pick(_array(list(GIVEN)), "i", 13)} ELSE '' END,
            CASE WHEN {g.r("i", 14)} < 0.66 THEN 'female' WHEN {g.r("i", 14)} < 0.95 THEN 'male' ELSE 'unknown' END,
            CASE WHEN {g.r("i", 15)} < 0.6
                 THEN date '1965-01-01' + floor({g.r("i", 16)} * 365 * 40)::int END,
            {g.pick(_array(CITIES), "i", 17)},
            CASE WHEN {g.r("i", 18)} < 0.7 THEN {g.pick(_array(OCCUPATIONS), "i", 19)} ELSE '' END,
            '1' || {g.pick(_array(["3", "5", "7", "8", "9"]), "i", 20)}
                || lpad(((i::bigint * 7919 + {g.seed}) % 1000000000)::text, 9, '0'),
            CASE WHEN {g.r("i", 21)} < 0.2 THEN 'user' || i || '@example.com' ELSE '' END,
            '',
            jsonb_strip_nulls(jsonb_build_object(
                'skin_type', CASE WHEN {g.r("i", 22)} < 0.55 THEN {g.pick(_array(SKIN_TYPES), "i", 23)} END,
                'member_level', {g.pick(levels, "i", 24)},
                'children', CASE WHEN {g.r("i", 25)} < 0.35 THEN 1 + floor({g.r("i", 26)} * 2)::int END
            )),
            {g.pick(_array(channel_weights), "i", 27)}::bigint,
            1 + floor(power({g.r("i", 28)}, 1.4) * {staff})::int,
            NULL,
            now() - make_interval(secs => {g.r("i", 29)} * 730 * 86400),
            now(), now(), now()
        FROM generate_series(1, {g.sizes.customers}) AS i
        """,
    )  # fmt: skip
    g.run("created_at = first seen", "UPDATE customers_customer SET created_at = first_seen_at")


def _identities_and_relationships(g: _Generator) -> None:
    g.run(
        "identities",
        f"""
        INSERT INTO customers_identity (customer_id, kind, namespace, value, created_at)
        SELECT id, 'phone', '', phone, first_seen_at FROM customers_customer
        UNION ALL
        SELECT id, 'wecom', '', 'wm' || lpad(to_hex((id * 2654435761) % 4294967296), 8, '0')
               || lpad(to_hex({g.seed} % 65536), 4, '0') || 'A', first_seen_at
        FROM customers_customer WHERE {g.r("id", 40)} < 0.9
        UNION ALL
        SELECT id, 'unionid', '', 'o' || lpad(to_hex((id * 2246822519) % 4294967296), 8, '0')
               || lpad(to_hex({g.seed} % 65536), 4, '0') || 'U', first_seen_at
        FROM customers_customer WHERE {g.r("id", 41)} < 0.7
        UNION ALL
        SELECT id, 'email', '', email, first_seen_at FROM customers_customer WHERE email <> ''
        UNION ALL
        SELECT id, 'shop', 'youzan', 'YZ' || (id * 7 + {g.seed}), first_seen_at
        FROM customers_customer WHERE {g.r("id", 42)} < 0.5
        """,
    )
    add_ways = _array(_weighted([("1", 60), ("2", 8), ("3", 10), ("4", 12), ("201", 6), ("202", 4)]))
    g.run(
        "staff relationships",
        f"""
        INSERT INTO customers_relationship (staff_id, customer_id, added_at, add_way, state, remark, status,
            status_changed_at)
        SELECT c.owner_id, c.id, c.first_seen_at, {g.pick(add_ways, "c.id", 43)}::int, ch.code,
               CASE WHEN {g.r("c.id", 44)} < 0.3 THEN c.name || '-' || c.city ELSE '' END,
               CASE WHEN {g.r("c.id", 45)} < 0.95 THEN 'active'
                    WHEN {g.r("c.id", 45)} < 0.99 THEN 'deleted_by_customer' ELSE 'deleted_by_staff' END,
               c.first_seen_at
        FROM customers_customer c JOIN customers_channel ch ON ch.id = c.source_channel_id
        WHERE {g.r("c.id", 40)} < 0.9
        """,
    )
    notes = _array(NOTES)
    g.run(
        "consents (opt-outs)",
        f"""
        INSERT INTO customers_consent (customer_id, channel, status, reason, changed_at)
        SELECT id, 'sms', 'opted_out', '回复TD退订', first_seen_at + interval '30 days'
        FROM customers_customer WHERE {g.r("id", 46)} < 0.03
        """,
    )
    g.run(
        "notes",
        f"""
        INSERT INTO customers_note (customer_id, author_id, text, created_at)
        SELECT id, owner_id, {g.pick(notes, "id", 47)},
               first_seen_at + interval '3 days'
        FROM customers_customer WHERE {g.r("id", 48)} < 0.05
        """,
    )  # fmt: skip


NOTES = ["关注成分安全，推荐温和型产品", "老客户，偏好门店自提", "对价格敏感，适合发券", "宝宝一岁，关注母婴产品",
         "皮肤敏感，慎推酸类产品"]  # fmt: skip


def _groups(g: _Generator) -> None:
    groups = g.sizes.groups
    g.run(
        "community groups",
        f"""
        INSERT INTO customers_communitygroup (id, chat_id, name, group_type, owner_id, created_at, dismissed_at)
        SELECT i, 'wr' || lpad(to_hex(i * 40503 + {g.seed}), 10, '0'),
               {g.pick(_array(CITIES), "i", 50)} || {g.pick(_array(GROUP_TYPES), "i", 51)} || (1 + i % 9),
               {g.pick(_array(GROUP_TYPES), "i", 51)}, 1 + (i % {g.sizes.staff}),
               now() - make_interval(secs => {g.r("i", 52)} * 700 * 86400),
               CASE WHEN {g.r("i", 53)} < 0.03 THEN now() - interval '10 days' END
        FROM generate_series(1, {groups}) AS i
        """,
    )
    first = f"1 + floor({g.r('id', 54)} * {groups})::int"
    second = f"1 + (({first}) + floor({g.r('id', 55)} * {max(groups - 1, 1)})::int) % {groups}"
    g.run(
        "group memberships",
        f"""
        INSERT INTO customers_groupmembership (group_id, customer_id, joined_at, left_at, join_scene)
        SELECT DISTINCT ON (group_id, customer_id) group_id, customer_id, joined_at, left_at, join_scene FROM (
            SELECT {first} AS group_id, id AS customer_id, first_seen_at + interval '2 days' AS joined_at,
                   CASE WHEN {g.r("id", 56)} < 0.12 THEN first_seen_at + interval '40 days' END AS left_at,
                   'invite' AS join_scene
            FROM customers_customer WHERE {g.r("id", 57)} < 0.32
            UNION ALL
            SELECT {second}, id, first_seen_at + interval '20 days', NULL, 'qr'
            FROM customers_customer WHERE {g.r("id", 57)} < 0.1
        ) m
        """,
    )


def _orders(g: _Generator) -> None:
    products = [(name, price) for _cat, _cycle, items in CATALOG for name, price in items]
    n = len(products) * 2
    # Buyer types: 40% never buy, 30% once, 18% now and then (2-8), 12% heavy (10-50); 25% of buyers lapsed.
    orders_per_customer = f"""
        CASE WHEN {g.r("id", 60)} < 0.40 THEN 0
             WHEN {g.r("id", 60)} < 0.70 THEN 1
             WHEN {g.r("id", 60)} < 0.88 THEN 2 + floor({g.r("id", 61)} * 7)::int
             ELSE 10 + floor({g.r("id", 61)} * 41)::int END"""
    line_count = f"(1 + ({g.r('o.id', 70)} < 0.3)::int + ({g.r('o.id', 71)} < 0.1)::int)"
    product = f"(1 + floor({g.r('o.id * 4 + l', 72)} * {n})::int)"
    quantity = f"(1 + ({g.r('o.id * 4 + l', 73)} < 0.25)::int + ({g.r('o.id * 4 + l', 74)} < 0.05)::int)"
    g.run(
        "orders",
        f"""
        WITH c AS (
            SELECT id, first_seen_at, owner_id, source_channel_id, k,
                   sum(k) OVER (ORDER BY id) - k AS offset_,
                   CASE WHEN {g.r("id", 62)} < 0.25
                        THEN now() - make_interval(secs => (300 + {g.r("id", 63)} * 300) * 86400)
                        ELSE now() END AS active_until
            FROM (SELECT id, first_seen_at, owner_id, source_channel_id, {orders_per_customer} AS k
                  FROM customers_customer) x
            WHERE k > 0
        ),
        o AS (
            SELECT c.offset_ + j AS id, c.id AS customer_id, c.owner_id, c.source_channel_id,
                   c.first_seen_at + (greatest(c.active_until, c.first_seen_at + interval '1 day') - c.first_seen_at)
                       * {g.r("c.offset_ + j", 64)} AS ordered_at
            FROM c CROSS JOIN LATERAL generate_series(1, c.k) AS j
        )
        INSERT INTO customers_order (id, source, external_id, customer_id, status, ordered_at, amount,
            refunded_amount, currency, channel_id, staff_id, created_at, updated_at)
        SELECT o.id, src.source, upper(left(src.source, 2)) || lpad(o.id::text, 10, '0'), o.customer_id,
               CASE WHEN {g.r("o.id", 65)} < 0.03 THEN 'refunded'
                    WHEN {g.r("o.id", 65)} < 0.04 THEN 'partially_refunded'
                    WHEN o.ordered_at < now() - interval '14 days' THEN 'completed'
                    WHEN {g.r("o.id", 66)} < 0.5 THEN 'shipped' ELSE 'paid' END,
               o.ordered_at, t.amount,
               CASE WHEN {g.r("o.id", 65)} < 0.03 THEN t.amount
                    WHEN {g.r("o.id", 65)} < 0.04 THEN round(t.amount * 0.3, 2) ELSE 0 END,
               'CNY',
               CASE WHEN {g.r("o.id", 67)} < 0.3 THEN o.source_channel_id END,
               CASE WHEN src.source = 'pos' THEN o.owner_id END,
               o.ordered_at, o.ordered_at
        FROM o
        CROSS JOIN LATERAL (SELECT {g.pick(_array(_weighted([("youzan", 5), ("tmall", 3), ("pos", 2)])), "o.id", 68)}
                            AS source) src
        CROSS JOIN LATERAL (
            SELECT sum(p.price * {quantity}) AS amount
            FROM generate_series(1, {line_count}) AS l
            JOIN customers_product p ON p.id = {product}
        ) t
        """,
    )  # fmt: skip
    g.run(
        "order lines",
        f"""
        INSERT INTO customers_orderline (order_id, product_id, sku, name, quantity, unit_price, amount)
        SELECT o.id, p.id, p.sku, p.name, {quantity}, p.price, p.price * {quantity}
        FROM customers_order o
        CROSS JOIN LATERAL generate_series(1, {line_count}) AS l
        JOIN customers_product p ON p.id = {product}
        """,
    )


def _events(g: _Generator) -> None:
    types = _array(_weighted(EVENT_TYPES))
    titles = _array([title for title, _topic in ARTICLES])
    topics = _array([topic for _title, topic in ARTICLES])
    g.run(
        "behaviour events",
        f"""
        WITH c AS (
            SELECT id, first_seen_at, source_channel_id, k, sum(k) OVER (ORDER BY id) - k AS offset_
            FROM (SELECT id, first_seen_at, source_channel_id,
                         floor(30 * power({g.r("id", 80)}, 2))::int AS k FROM customers_customer) x
            WHERE k > 0
        ),
        e AS (
            SELECT c.offset_ + j AS id, c.id AS customer_id, c.source_channel_id,
                   c.first_seen_at + (now() - c.first_seen_at) * {g.r("c.offset_ + j", 81)} AS occurred_at,
                   {g.pick(types, "c.offset_ + j", 82)} AS type,
                   1 + floor({g.r("c.offset_ + j", 83)} * {len(ARTICLES)})::int AS article
            FROM c CROSS JOIN LATERAL generate_series(1, c.k) AS j
        )
        INSERT INTO customers_event (id, customer_id, type, occurred_at, properties, content_ref, channel_id,
            dedupe_key, created_at)
        SELECT e.id, e.customer_id, e.type, e.occurred_at,
               CASE e.type
                   WHEN 'content_view' THEN jsonb_build_object('title', ({titles})[e.article],
                                                              'topic', ({topics})[e.article])
                   WHEN 'cart_add'
                       THEN jsonb_build_object('sku', 'P' || lpad((e.id % {len(CATALOG)})::text, 2, '0') || '00')
                   WHEN 'share' THEN jsonb_build_object('title', ({titles})[e.article])
                   ELSE '{{}}'::jsonb END,
               CASE WHEN e.type IN ('content_view', 'share') THEN 'article:' || e.article ELSE '' END,
               CASE WHEN {g.r("e.id", 84)} < 0.2 THEN e.source_channel_id END,
               'seed-' || e.id, e.occurred_at
        FROM e
        """,
    )  # fmt: skip


def _finishing(g: _Generator) -> None:
    g.run(
        "customers' last seen",
        """
        UPDATE customers_customer c SET last_seen_at = greatest(c.first_seen_at, s.latest)
        FROM (
            SELECT customer_id, max(t) AS latest FROM (
                SELECT customer_id, max(ordered_at) AS t FROM customers_order GROUP BY customer_id
                UNION ALL
                SELECT customer_id, max(occurred_at) FROM customers_event GROUP BY customer_id
            ) u GROUP BY customer_id
        ) s
        WHERE c.id = s.customer_id
        """,
    )
