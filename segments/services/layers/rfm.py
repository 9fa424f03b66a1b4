"""RFM, set-based: recency, frequency and monetary per customer, scores 1 to 5, the 8 classes (and no_purchase),
class changes, a run snapshot and the 9 model segments — a handful of statements in one transaction, whatever the
number of customers.

Quantile scores use `percent_rank()` (the share of the other buyers with a strictly lower value) cut at
0.2 / 0.4 / 0.6 / 0.8: equal values always get equal scores, so the result never depends on row order (plain
NTILE splits ties arbitrarily). Recency is ranked by the last purchase date, so the most recent buyers score highest.
Rows store that date, not days since it, so a run whose reference date moved rewrites only the rows that change.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from customers.conditions.predicates import COUNTED_STATUSES
from customers.conditions.sets import local_settings, materialize, refresh_statistics, temp_table_name
from segments.models import (
    LayeringSettings,
    RfmClass,
    RfmMethod,
    RfmRun,
    default_high_from,
    default_rfm_thresholds,
    workspace_today,
)
from segments.services.layers.model_segments import ModelSegment, lock_model, set_work_mem, sync_model_segments

logger = logging.getLogger(__name__)

QUANTILE_CUTS = [0.2, 0.4, 0.6, 0.8]
DIMENSIONS = ("r", "f", "m")
CLASS_RULES = {  # class → (R high, F high, M high), DOMAIN.md's eight classes
    RfmClass.IMPORTANT_VALUE: (True, True, True),
    RfmClass.IMPORTANT_DEVELOP: (True, False, True),
    RfmClass.IMPORTANT_KEEP: (False, True, True),
    RfmClass.IMPORTANT_RETAIN: (False, False, True),
    RfmClass.GENERAL_VALUE: (True, True, False),
    RfmClass.GENERAL_DEVELOP: (True, False, False),
    RfmClass.GENERAL_KEEP: (False, True, False),
    RfmClass.GENERAL_RETAIN: (False, False, False),
}
DESCRIPTIONS = {
    RfmClass.IMPORTANT_VALUE: _("RFM: recent, frequent, high spend. Exclusive perks."),
    RfmClass.IMPORTANT_DEVELOP: _("RFM: recent, infrequent, high spend. Raise the purchase frequency."),
    RfmClass.IMPORTANT_KEEP: _("RFM: not recent, frequent, high spend. Was valuable: win them back."),
    RfmClass.IMPORTANT_RETAIN: _("RFM: not recent, infrequent, high spend. Retain before they are lost."),
    RfmClass.GENERAL_VALUE: _("RFM: recent, frequent, low spend. Raise the order value."),
    RfmClass.GENERAL_DEVELOP: _("RFM: recent, infrequent, low spend. Develop with new-customer offers."),
    RfmClass.GENERAL_KEEP: _("RFM: not recent, frequent, low spend. Keep in touch."),
    RfmClass.GENERAL_RETAIN: _("RFM: not recent, infrequent, low spend. Discounts."),
    RfmClass.NO_PURCHASE: _("RFM: no purchase in the window."),
}
SEGMENT_NAMES = {**{c: c.label for c in CLASS_RULES}, RfmClass.NO_PURCHASE: _("RFM: no purchase in the window")}


@dataclass(frozen=True)
class RfmParameters:
    as_of: date
    window_days: int
    method: str
    thresholds: dict[str, list[Any]]
    high_from: dict[str, int]

    def window(self) -> tuple[datetime, datetime]:
        """[start, end): the `window_days` calendar days ending with `as_of`, in the workspace time zone."""
        zone = ZoneInfo(settings.TIME_ZONE)
        end = datetime.combine(self.as_of + timedelta(days=1), datetime.min.time(), tzinfo=zone)
        start = datetime.combine(self.as_of - timedelta(days=self.window_days - 1), datetime.min.time(), tzinfo=zone)
        return start, end


def parameters(layering: LayeringSettings, as_of: date | None = None) -> RfmParameters:
    """The run's parameters from the settings, checked (ValueError says what is wrong)."""
    thresholds = {**default_rfm_thresholds(), **(layering.rfm_thresholds or {})}
    high_from = {**default_high_from(), **(layering.rfm_high_from or {})}
    for dim in DIMENSIONS:
        bounds = thresholds[dim]
        if not isinstance(bounds, list) or len(bounds) != 4 or not all(_is_number(b) for b in bounds):
            raise ValueError(f"rfm_thresholds.{dim}: expected four numbers (the lower bounds of scores 5, 4, 3, 2)")
        ordered = sorted(bounds) if dim == "r" else sorted(bounds, reverse=True)
        if bounds != ordered or len(set(bounds)) != 4:
            raise ValueError(f"rfm_thresholds.{dim}: expected strictly {'rising' if dim == 'r' else 'falling'} bounds")
        if not isinstance(high_from[dim], int) or not 1 <= high_from[dim] <= 5:
            raise ValueError(f"rfm_high_from.{dim}: expected a score from 1 to 5")
    if layering.rfm_method not in RfmMethod.values:
        raise ValueError(f"rfm_method: expected one of {', '.join(RfmMethod.values)}")
    if layering.rfm_window_days < 1:
        raise ValueError("rfm_window_days: expected at least one day")
    return RfmParameters(
        as_of=as_of or layering.rfm_as_of or workspace_today(),
        window_days=layering.rfm_window_days,
        method=layering.rfm_method,
        thresholds={dim: [Decimal(str(b)) for b in thresholds[dim]] for dim in DIMENSIONS},
        high_from={dim: high_from[dim] for dim in DIMENSIONS},
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


# --------------------------------------------------------------------------------------------------------- SQL

# Every run takes three steps, full or incremental alike:
# - the touched customers: those whose values (last purchase date, count and net spend in the window) may differ
#   from their stored row, with their new values next to the stored row, into a temporary table. A full run
#   aggregates everyone's orders and compares them with every row (FULL_TOUCHED_SQL); an incremental run reads the
#   orders of the customers they can concern only (TOUCHED_SQL);
# - the thresholds (CUTS_SQL): each dimension's lowest value scoring 5, 4, 3 and 2. Quantile scores are
#   percent_rank() (the share of the other buyers with a strictly lower value) cut at 0.2 / 0.4 / 0.6 / 0.8, worked
#   out per distinct value from the counts per value of the stored rows, less the touched customers' stored values,
#   plus their new ones; recency ranks by the last purchase date, so the most recent buyers score highest. Equal
#   values share one rank, hence one score, and the score never falls as the value rises: a buyer's score is a
#   comparison with four thresholds. Operators' thresholds are fixed ("bought within N days" becomes a date);
# - the changes (CHANGES_SQL): the touched customers scored and compared with their row, and everyone else whose
#   scores (a full run: or class) move with the thresholds. Their values did not change, so one scan with a filter
#   finds them, where scoring and comparing a million rows through a join took 1.7 s.
# Then the writes, over the changes only (WRITE_SQL).

# A customer's purchases: the last one (in the window or not), and the count and net spend in the window.
PURCHASES_SQL = """SELECT customer_id,
           max(ordered_at) AS last_at,
           count(*) FILTER (WHERE ordered_at >= %(start)s) AS frequency,
           coalesce(sum(amount - refunded_amount) FILTER (WHERE ordered_at >= %(start)s), 0) AS monetary
    FROM customers_order"""
# The columns of a touched customer: the new values, whether the customer was merged away (`gone`), and the row.
TOUCHED_COLUMNS = """
       s.customer_id IS NOT NULL AS has_row, s.rfm_class AS old_class, s.last_purchase_on AS old_last,
       s.frequency AS old_frequency, s.monetary AS old_monetary, s.r_score AS old_r, s.f_score AS old_f,
       s.m_score AS old_m"""
# Everyone with a purchase before the end of the window next to every row: those that differ, those without a
# row, buyers with no purchase left and the rows of merged customers. Compared in slices of the customers' ids, a
# slice per process at a time (a parallel append of FULL_SLICE_SQL): each groups its orders in customer order from
# their covering index, not in a hash table (the planner prices the hash below the index's ordered scan, taking it
# for random reads: 2.1 s against 1.3 s at 4.8M orders, see recompute_rfm) and compares them with its rows there.
# One aggregate shared by the workers left the comparison with a million rows to the leader alone: 2.1 s for both
# steps, against 1.5-1.7 s in six slices on two cores.
FULL_TOUCHED_SQL = """
SELECT x.*, x.customer_id IN (SELECT id FROM customers_customer WHERE merged_into_id IS NOT NULL) AS gone
FROM ({slices}) AS x
"""
FULL_SLICE_SQL = """
SELECT coalesce(f.customer_id, s.customer_id) AS customer_id, f.last_at::date AS last_purchase_on,
       coalesce(f.frequency, 0) AS frequency, coalesce(f.monetary, 0) AS monetary,{columns}
FROM ({purchases}
      WHERE status = ANY(%(statuses)s::text[]) AND ordered_at < %(end)s AND {slice}
      GROUP BY customer_id) AS f
FULL JOIN (SELECT * FROM segments_customerrfm WHERE {slice}) AS s ON s.customer_id = f.customer_id
WHERE (f.last_at::date, coalesce(f.frequency, 0), coalesce(f.monetary, 0))
      IS DISTINCT FROM (s.last_purchase_on, s.frequency, s.monetary)
   OR s.customer_id IN (SELECT id FROM customers_customer WHERE merged_into_id IS NOT NULL)
"""
SLICE_BOUNDS_SQL = (
    "SELECT min(id), max(id), current_setting('max_parallel_workers_per_gather')::int FROM customers_customer"
)
# A customer's values change only if her orders changed since the previous run (the rechecks taken from
# RfmRecheck, written by the consumer of order and merge events) or one of her orders entered or left the window
# as the reference date moved (its two edges, read through the orders' time index).
TOUCHED_SQL = """
WITH merged AS (SELECT id FROM customers_customer WHERE merged_into_id IS NOT NULL),
touched AS (
    SELECT customer_id FROM {rechecks}
    UNION
    SELECT customer_id FROM customers_order
    WHERE (ordered_at >= %(prev_start)s AND ordered_at < %(start)s)
       OR (ordered_at >= %(prev_end)s AND ordered_at < %(end)s)
),
purchases AS (
    {purchases}
    WHERE customer_id IN (SELECT customer_id FROM touched) AND customer_id NOT IN (SELECT id FROM merged)
          AND status = ANY(%(statuses)s::text[]) AND ordered_at < %(end)s
    GROUP BY customer_id
)
SELECT t.customer_id, p.last_at::date AS last_purchase_on,
       coalesce(p.frequency, 0) AS frequency, coalesce(p.monetary, 0) AS monetary,
       t.customer_id IN (SELECT id FROM merged) AS gone,{columns}
FROM touched t LEFT JOIN purchases p ON p.customer_id = t.customer_id
     -- their stored rows by primary key (OFFSET 0 keeps the lookup a lookup): a plain join hashed the whole table
     LEFT JOIN LATERAL (SELECT * FROM segments_customerrfm s WHERE s.customer_id = t.customer_id OFFSET 0) AS s ON TRUE
"""
# The stored rows' counts per value of each dimension after the run: those before it, less the touched customers'
# stored values, plus their new ones. A full run counts the rows before it in one pass (grouping sets); a nightly
# one reads the counts the previous run left (RfmValueCount, about 45,000 values where counting took 0.5-0.6 s).
VALUE_COUNTS_SQL = """
SELECT dims, last_purchase_on, frequency, monetary, sum(n)::integer AS n
FROM (
    {before}
    UNION ALL
    SELECT GROUPING(last_purchase_on, frequency, monetary), last_purchase_on, frequency, monetary, sum(n)
    FROM (
        SELECT old_last AS last_purchase_on, old_frequency AS frequency, old_monetary AS monetary, -1 AS n
        FROM {touched} WHERE old_frequency > 0
        UNION ALL
        SELECT last_purchase_on, frequency, monetary, 1 FROM {touched} WHERE frequency > 0 AND NOT gone
    ) AS corrections
    GROUP BY GROUPING SETS ((last_purchase_on), (frequency), (monetary))
) AS counts
GROUP BY dims, last_purchase_on, frequency, monetary
HAVING sum(n) > 0
"""
COUNTED_ROWS = """SELECT GROUPING(last_purchase_on, frequency, monetary) AS dims, last_purchase_on, frequency,
           monetary, count(*) AS n
    FROM segments_customerrfm WHERE frequency > 0
    GROUP BY GROUPING SETS ((last_purchase_on), (frequency), (monetary))"""
COUNTED_BEFORE = """SELECT v.dims, u.last_purchase_on, u.frequency, u.monetary, u.n
    FROM segments_rfmvaluecount v,
         unnest(v.last_purchase_on, v.frequency, v.monetary, v.n) AS u(last_purchase_on, frequency, monetary, n)"""
# One row per dimension: its values and their counts, in the same order (aggregated in one pass over the same
# rows; sorting them took 0.07 s more), the other dimensions' arrays left NULL.
STORE_COUNTS_SQL = (
    "DELETE FROM segments_rfmvaluecount",
    """INSERT INTO segments_rfmvaluecount (dims, last_purchase_on, frequency, monetary, n)
    SELECT dims, array_agg(last_purchase_on) FILTER (WHERE dims = 3),
           array_agg(frequency) FILTER (WHERE dims = 5),
           array_agg(monetary) FILTER (WHERE dims = 6),
           array_agg(n)
    FROM {counts} GROUP BY dims""",
)
# A running sum of the counts gives each value's percent_rank, and `width_bucket` turns it into 1 to 5 at the cuts.
CUTS_SQL = """
WITH histogram AS (SELECT * FROM {counts}),{ranks}
SELECT r.s5, r.s4, r.s3, r.s2, f.s5, f.s4, f.s3, f.s2, m.s5, m.s4, m.s3, m.s2 FROM r_cut r, f_cut f, m_cut m
"""
RANK_CTE = """
{dim}_rank AS (
    SELECT {column} AS value, 1 + width_bucket(
        (sum(n) OVER (ORDER BY {column} ASC) - n)::float8 / greatest(sum(n) OVER () - 1, 1)::float8,
        %(cuts)s::float8[]) AS score
    FROM histogram WHERE dims = {dims}
),
{dim}_cut AS (
    SELECT min(value) FILTER (WHERE score >= 5) AS s5, min(value) FILTER (WHERE score >= 4) AS s4,
           min(value) FILTER (WHERE score >= 3) AS s3, min(value) FILTER (WHERE score >= 2) AS s2
    FROM {dim}_rank
)"""
RANKS = ",".join(
    RANK_CTE.format(dim=dim, column=column, dims=dims)  # GROUPING() sets a bit for each column not grouped by
    for dim, column, dims in (("r", "last_purchase_on", 0b011), ("f", "frequency", 0b101), ("m", "monetary", 0b110))
)
# Frequencies are whole numbers, so their cuts are too (rounded up: "at least 2.5 orders" is "at least 3"): an
# integer comparison instead of casting a million counts to numeric.
SCORED = (("r", "last_purchase_on", "date"), ("f", "frequency", "bigint"), ("m", "monetary", "numeric"))


def scores_sql(row: str) -> str:
    """The three scores of `row`: its values against each dimension's four thresholds (values from `_cuts`)."""
    return ",".join(
        f"""
    CASE WHEN {row}.frequency = 0 THEN NULL"""
        + "".join(
            f"\n         WHEN {row}.{column} >= %(cut_{dim}{score})s::{kind} THEN {score}" for score in (5, 4, 3, 2)
        )
        + f" ELSE 1 END AS {dim}_score"
        for dim, column, kind in SCORED
    )


CLASS_OF = """CASE WHEN {r} IS NULL THEN 'no_purchase'
                ELSE CASE WHEN {m} >= %(high_m)s THEN 'important_' ELSE 'general_' END
                     || CASE WHEN {r} >= %(high_r)s
                             THEN CASE WHEN {f} >= %(high_f)s THEN 'value' ELSE 'develop' END
                             ELSE CASE WHEN {f} >= %(high_f)s THEN 'keep' ELSE 'retain' END END
           END"""
CLASS_SQL = CLASS_OF.format(r="f.r_score", f="f.f_score", m="f.m_score")
# A stored row whose scores stay has the class of its stored scores (integers, where the class of the new scores
# would work each of them out again from the values).
STORED_CLASS_SQL = CLASS_OF.format(r="f.old_r", f="f.old_f", m="f.old_m")
CHANGED = """(old_last, old_frequency, old_monetary, old_r, old_f, old_m, old_class)
                IS DISTINCT FROM (last_purchase_on, frequency, monetary, r_score, f_score, m_score, rfm_class)"""
# `OFFSET 0` keeps a subquery from being merged into the query above it: scores and classes are then worked out
# once per row, not again wherever the class, the comparison and the output name them. The stored rows are
# compared by their scores (a full run: also by class, for a run whose class cuts changed), only the few rows the
# filter keeps being classified again.
CHANGES_SQL = """
SELECT customer_id, last_purchase_on, frequency, monetary, r_score, f_score, m_score, rfm_class, has_row, old_class,
       gone
FROM (
    SELECT f.*, {rfm_class} AS rfm_class
    FROM (SELECT t.*, {touched_scores} FROM {touched} t WHERE t.has_row OR NOT t.gone OFFSET 0) AS f
    OFFSET 0
) AS x
WHERE CASE WHEN gone THEN has_row ELSE {changed} END
UNION ALL
SELECT f.customer_id, f.last_purchase_on, f.frequency, f.monetary, f.r_score, f.f_score, f.m_score,
       {rfm_class} AS rfm_class, TRUE, f.rfm_class, FALSE
FROM (
    SELECT s.customer_id, s.last_purchase_on, s.frequency, s.monetary, s.rfm_class, s.r_score AS old_r,
           s.f_score AS old_f, s.m_score AS old_m, {stored_scores}
    FROM segments_customerrfm s
    WHERE {stored} AND NOT EXISTS (SELECT 1 FROM {touched} t WHERE t.customer_id = s.customer_id)
) AS f
WHERE {moved}
"""
SCORES_MOVED = "(f.r_score, f.f_score, f.m_score) IS DISTINCT FROM (f.old_r, f.old_f, f.old_m)"

# The rechecks a run handles: those it can see, deleted in its transaction (a consumer's recheck committed later
# stays for the next run; a run that fails leaves them all).
TAKE_RECHECKS_SQL = (
    "CREATE TEMP TABLE {name} (customer_id bigint) ON COMMIT DROP",
    "WITH taken AS (DELETE FROM segments_rfmrecheck RETURNING customer_id)"
    " INSERT INTO {name} SELECT DISTINCT customer_id FROM taken",
    "ANALYZE {name}",
)
RECHECK_SQL = "INSERT INTO segments_rfmrecheck (customer_id) SELECT unnest(%s::bigint[])"
# Customers with no row after the changes are written (new since the last run, never bought; a first run's
# non-buyers; a merge undone): no_purchase rows, in the shape of the changes. A full run looks for them only when
# customers outnumber rows (a count, 0.2 s; the rows are counted by the run's summary), so a run without such
# customers does not compare a million customers with a million rows (0.9 s).
UNCLASSIFIED_SQL = """
SELECT c.id AS customer_id, NULL::date AS last_purchase_on, 0 AS frequency, 0::numeric AS monetary,
       NULL::integer AS r_score, NULL::integer AS f_score, NULL::integer AS m_score,
       'no_purchase'::text AS rfm_class, FALSE AS has_row, NULL::text AS old_class, FALSE AS gone
FROM customers_customer c
WHERE c.merged_into_id IS NULL AND NOT EXISTS (SELECT 1 FROM segments_customerrfm r WHERE r.customer_id = c.id)
"""
CUSTOMERS_SQL = "SELECT count(*) FROM customers_customer WHERE merged_into_id IS NULL"
# An incremental run has given rows to the customers it touched; the others without one are customers created since
# the previous run (ids only grow), found by an index range instead of two counts and a comparison of everyone. One
# created by a transaction that committed after a run saw a higher id waits for the weekly full run.
LAST_ROW_SQL = "SELECT coalesce(max(customer_id), 0) FROM segments_customerrfm"
NEW_CUSTOMERS_SQL = UNCLASSIFIED_SQL.rstrip() + " AND c.id > %s\n"

# Each part reads the changes table itself, not a CTE over it: the table's statistics then say how many rows each
# part writes, and the update hashes the changes, not the million stored rows (0.5 s at a million).
WRITE_SQL = """
WITH moves AS (
    INSERT INTO segments_rfmtransition (run_id, customer_id, from_class, to_class, at)
    SELECT %(run)s, customer_id, coalesce(old_class, ''), rfm_class, %(at)s FROM {changes}
    WHERE NOT gone AND old_class IS DISTINCT FROM rfm_class
    RETURNING 1
),
updated AS (
    UPDATE segments_customerrfm t
    SET last_purchase_on = n.last_purchase_on, frequency = n.frequency, monetary = n.monetary, r_score = n.r_score,
        f_score = n.f_score, m_score = n.m_score, rfm_class = n.rfm_class, computed_at = %(at)s
    FROM {changes} n WHERE NOT n.gone AND n.has_row AND t.customer_id = n.customer_id
    RETURNING 1
),
inserted AS (
    INSERT INTO segments_customerrfm (customer_id, last_purchase_on, frequency, monetary, r_score, f_score, m_score,
                                      rfm_class, computed_at)
    SELECT customer_id, last_purchase_on, frequency, monetary, r_score, f_score, m_score, rfm_class, %(at)s
    FROM {changes} WHERE NOT has_row
    ORDER BY customer_id  -- rows in customer order: a rule reading a class then looks its customers up in order
    RETURNING 1
),
gone AS (
    DELETE FROM segments_customerrfm t USING {changes} n WHERE n.gone AND t.customer_id = n.customer_id
    RETURNING 1
)
SELECT (SELECT count(*) FROM moves), (SELECT count(*) FROM updated), (SELECT count(*) FROM inserted),
       (SELECT count(*) FROM gone)
"""

SUMMARY_SQL = """
SELECT rfm_class, count(*), coalesce(sum(monetary), 0), avg(%(as_of)s::date - last_purchase_on), avg(frequency),
       avg(monetary)
FROM segments_customerrfm GROUP BY rfm_class
"""

ASSIGNMENT_SQL = "SELECT customer_id, 'rfm:' || rfm_class FROM segments_customerrfm"
# The columns of the changes whose statistics the write's plan reads (the rest cost ANALYZE time for nothing).
CHANGES_ANALYZED = ["customer_id", "gone", "has_row"]
TOUCHED_ANALYZED = ["customer_id", "gone"]
# An incremental run reads the orders at the window's edges for the days the reference date moved: up to a week.
MAX_INCREMENTAL_DAYS = 7
# Up to this many changed rows, only their customers' model-segment memberships are compared (a nightly run).
COMPARE_ONLY_MOVERS_UP_TO = 200_000
# The customers whose class changed, who are new or gone, and those whose orders a merge moved (an incremental
# run's rechecks): a merge may have moved a membership to them. A score changing within a class moves nobody.
MOVERS_SQL = "SELECT customer_id FROM {changes} WHERE gone OR NOT has_row OR old_class IS DISTINCT FROM rfm_class"
RECHECKED_SQL = "SELECT customer_id FROM {rechecks}"
# The movers' classes, at hand in the changes (20,000 lookups of the RFM table by key took 0.1 s a night); model
# segments look up the others' (rechecked customers who are no movers here, and gone ones, who have no row).
MOVED_CLASSES_SQL = """SELECT customer_id, 'rfm:' || rfm_class AS model_key FROM {changes}
    WHERE NOT gone AND (NOT has_row OR old_class IS DISTINCT FROM rfm_class)"""


def _values(p: RfmParameters, *, run: RfmRun, at: datetime, base: RfmRun | None) -> dict[str, Any]:
    """The statements' values: a full run's, or an incremental one's building on `base`."""
    start, end = p.window()
    values: dict[str, Any] = {
        "start": start, "end": end, "as_of": p.as_of, "statuses": list(COUNTED_STATUSES),
        "run": run.pk, "at": at, **{f"high_{dim}": p.high_from[dim] for dim in DIMENSIONS},
    }  # fmt: skip
    if base is not None:
        values["prev_start"], values["prev_end"] = replace(p, as_of=base.as_of).window()
    if p.method == RfmMethod.QUANTILE:
        values["cuts"] = QUANTILE_CUTS
    return values


def _slices(values: dict[str, Any]) -> list[str]:
    """A full run's slices of the customers' ids (FULL_SLICE_SQL), two per process that may take one, their bounds
    added to `values`: equal ranges between the lowest and highest id, the first and last open-ended."""
    with connection.cursor() as cursor:
        cursor.execute(SLICE_BOUNDS_SQL)
        low, high, workers = cursor.fetchone()
    count = 2 * (max(workers, 0) + 1)
    if low is None or high - low < count:
        return ["TRUE"]
    bounds = [low + (high - low) * k // count for k in range(1, count)]
    values.update({f"slice_{k}": bound for k, bound in enumerate(bounds)})
    edges = [None, *range(len(bounds)), None]
    return [
        " AND ".join(
            ([f"customer_id >= %(slice_{lower})s"] if lower is not None else [])
            + ([f"customer_id < %(slice_{upper})s"] if upper is not None else [])
        )
        for lower, upper in pairwise(edges)
    ]


def _changes_sql(*, touched: str, full: bool) -> str:
    """The changes statement over the values of the `touched` table, its thresholds from `_cuts`."""
    return CHANGES_SQL.format(
        touched=touched, rfm_class=CLASS_SQL, changed=CHANGED, touched_scores=scores_sql("t"),
        stored_scores=scores_sql("s"), stored="TRUE" if full else "s.frequency > 0",
        moved=f"({SCORES_MOVED} OR f.rfm_class IS DISTINCT FROM ({STORED_CLASS_SQL}))" if full else SCORES_MOVED,
    )  # fmt: skip


def _cuts(p: RfmParameters, *, touched: str, values: dict[str, Any], full: bool) -> dict[str, Any]:
    """The run's thresholds: per dimension the lowest value scoring 5, 4, 3 and 2 (None when no value does), as
    values of CHANGES_SQL. Quantile scores: from the rows' counts per value after the run, which are stored for the
    next run. Threshold scores turn "bought within N days" into a date (a later switch to quantile scores changes
    the run's parameters, so that run is full and counts the rows)."""
    if p.method == RfmMethod.QUANTILE:
        before = COUNTED_ROWS if full else COUNTED_BEFORE
        counts = materialize(VALUE_COUNTS_SQL.format(before=before, touched=touched), (), analyze=["dims"])
        with connection.cursor() as cursor:
            cursor.execute(CUTS_SQL.format(counts=counts, ranks=RANKS), values)
            row = cursor.fetchone()
            for statement in STORE_COUNTS_SQL:
                cursor.execute(statement.format(counts=counts))
        cuts = {"r": row[0:4], "f": row[4:8], "m": row[8:12]}
    else:
        cuts = {"r": [_days_before(p.as_of, days) for days in p.thresholds["r"]], "f": p.thresholds["f"],
                "m": p.thresholds["m"]}  # fmt: skip
    cuts["f"] = [None if bound is None else _whole(bound) for bound in cuts["f"]]
    return {
        f"cut_{dim}{score}": bound for dim in DIMENSIONS for score, bound in zip((5, 4, 3, 2), cuts[dim], strict=True)
    }


def _whole(bound: Decimal | int) -> int:
    """A frequency cut as the least whole number of orders reaching it, within bigint (NaN, above every number in
    PostgreSQL, is reached by none)."""
    if bound != bound:  # NaN
        return 2**62
    try:
        return max(-(2**62), min(math.ceil(bound), 2**62))
    except OverflowError:
        return -(2**62) if bound < 0 else 2**62


def _days_before(day: date, days: Decimal) -> date:
    """The earliest purchase date whose recency in whole days is at most `days`, on `day`."""
    try:
        return day - timedelta(days=math.floor(days))
    except OverflowError:
        return date.min if days > 0 else date.max


def fingerprint(p: RfmParameters) -> dict[str, Any]:
    """What two runs must share for the second to build on the first's stored rows."""
    return {
        "window_days": p.window_days, "method": p.method, "high_from": p.high_from,
        "thresholds": {dim: [str(b) for b in bounds] for dim, bounds in p.thresholds.items()},
    }  # fmt: skip


def incremental_base(p: RfmParameters) -> RfmRun | None:
    """The previous run an incremental run can build on, or None when this run must be full: no previous run, or
    one with other parameters (window, scoring, cuts) or a later reference date (a backtest going back) or more
    than MAX_INCREMENTAL_DAYS before this one's, or a last full run RFM_FULL_RECOMPUTE_DAYS old (the weekly check
    that nothing drifted: orders written without their domain events, by hand in the database)."""
    runs = RfmRun.objects.order_by("-started_at", "-pk")
    last = runs.first()
    if (
        last is None
        or last.parameters != fingerprint(p)
        or not 0 <= (p.as_of - last.as_of).days <= MAX_INCREMENTAL_DAYS
    ):
        return None
    last_full = runs.filter(full=True).values_list("started_at", flat=True).first()
    if (
        last_full is None
        or (workspace_today() - timezone.localdate(last_full)).days >= settings.RFM_FULL_RECOMPUTE_DAYS
    ):
        return None
    return last


def take_rechecks() -> str:
    """Move the visible rechecks into a temporary table (deleting them in this transaction); return its name."""
    name = temp_table_name("rfm_rechecks")
    with connection.cursor() as cursor:
        for statement in TAKE_RECHECKS_SQL:
            cursor.execute(statement.format(name=name))
    return name


def recheck(customer_ids: Iterable[int]) -> int:
    """Note customers whose orders changed, for the next incremental run (the consumer of order events calls it)."""
    ids = sorted(set(customer_ids))
    if ids:
        with connection.cursor() as cursor:
            cursor.execute(RECHECK_SQL, [ids])
    return len(ids)


def model_segments() -> list[ModelSegment]:
    return [
        ModelSegment(f"rfm:{value}", SEGMENT_NAMES[RfmClass(value)], DESCRIPTIONS[RfmClass(value)])
        for value in RfmClass.values
    ]


def summarize(rows: list[tuple]) -> dict[str, dict[str, Any]]:
    """Per class: count and share of customers, GMV (monetary sum) and its share, average R, F and M."""
    by_class = {row[0]: row for row in rows}
    customers = sum(row[1] for row in rows) or 1
    gmv = sum((row[2] for row in rows), Decimal(0)) or Decimal(1)
    counts = {}
    for value in RfmClass.values:
        _cls, count, monetary, recency, frequency, average = by_class.get(value, (value, 0, Decimal(0), None, 0, 0))
        counts[value] = {
            "count": count,
            "share": round(count / customers, 4),
            "gmv": float(round(monetary, 2)),
            "gmv_share": float(round(monetary / gmv, 4)),
            "avg_recency_days": None if recency is None else float(round(recency, 1)),
            "avg_frequency": float(round(frequency or 0, 2)),
            "avg_monetary": float(round(average or 0, 2)),
        }
    return counts


def _summary(p: RfmParameters) -> dict[str, dict[str, Any]]:
    with connection.cursor() as cursor:
        cursor.execute(SUMMARY_SQL, {"as_of": p.as_of})
        return summarize(cursor.fetchall())


def recompute_rfm(*, as_of: date | None = None, incremental: bool = False, work_mem: str = "256MB") -> RfmRun:
    """Recompute every customer's RFM as of `as_of` (default: settings.rfm_as_of, else today in the workspace
    zone), record class changes and the run's snapshot, and move the 9 model segments — one transaction, under the
    model's lock. Idempotent: the same data and date change nothing (no transition, no membership row).

    A full run aggregates every customer's orders. `incremental=True` (the nightly run) builds on the previous
    run when it can (`incremental_base`): it reads the orders of the customers they can concern only, and is full
    otherwise and weekly. Both give the same result."""
    started = time.monotonic()
    at = timezone.now()
    with transaction.atomic(durable=True):
        lock_model("rfm")
        set_work_mem(work_mem)
        p = parameters(LayeringSettings.load(), as_of)
        base = incremental_base(p) if incremental else None
        full = base is None
        run = RfmRun.objects.create(started_at=at, as_of=p.as_of, window_days=p.window_days, method=p.method,
                                    full=full, parameters=fingerprint(p))  # fmt: skip
        if full:
            with connection.cursor() as cursor:
                cursor.execute("DELETE FROM segments_rfmrecheck")  # before the orders are read: all are covered
            rechecks = None
        else:
            rechecks = take_rechecks()
        values = _values(p, run=run, at=at, base=base)
        # The touched customers' values, the thresholds, then everyone's changes. Read in the workspace's time
        # zone, where a purchase's date is its time cast to a date (`AT TIME ZONE` looks the zone up by name for
        # every row: 0.3 s more at 600,000 buyers).
        if full:
            slices = _slices(values)
            touched_sql = FULL_TOUCHED_SQL.format(slices="\nUNION ALL".join(
                FULL_SLICE_SQL.format(purchases=PURCHASES_SQL, columns=TOUCHED_COLUMNS, slice=slice_sql)
                for slice_sql in slices
            ))  # fmt: skip
        else:
            touched_sql = TOUCHED_SQL.format(rechecks=rechecks, purchases=PURCHASES_SQL, columns=TOUCHED_COLUMNS)
        ordered = {"enable_hashagg": "off"} if full else {}  # see FULL_TOUCHED_SQL
        with local_settings(TimeZone=settings.TIME_ZONE, **ordered):
            touched = materialize(touched_sql, values, analyze=TOUCHED_ANALYZED)
        values.update(_cuts(p, touched=touched, values=values, full=full))
        # The stored rows are scanned by two workers with the leader. The planner, which cannot tell how few rows
        # the comparison keeps, prices gathering a million of them above scanning alone (0.5 s against 0.15 s).
        with local_settings(parallel_tuple_cost="0.001"):
            changed = [materialize(_changes_sql(touched=touched, full=full), values, analyze=CHANGES_ANALYZED)]
        with connection.cursor() as cursor:
            if not full:  # read before the write adds rows
                cursor.execute(LAST_ROW_SQL)
                last_row = cursor.fetchone()[0]
            cursor.execute(WRITE_SQL.format(changes=changed[0]), values)
            moves, updated, inserted, gone = cursor.fetchone()
            counts = None
            if full:  # the summary counts the rows: customers without one are looked for if they outnumber them
                counts = _summary(p)
                cursor.execute(CUSTOMERS_SQL)
                missing = cursor.fetchone()[0] > sum(c["count"] for c in counts.values())
                unclassified = (UNCLASSIFIED_SQL, ()) if missing else None
            else:
                unclassified = (NEW_CUSTOMERS_SQL, (last_row,))
            if unclassified:
                changed.append(materialize(*unclassified, analyze=CHANGES_ANALYZED))
                cursor.execute(WRITE_SQL.format(changes=changed[1]), values)
                more_moves, _updated, more_inserted, _gone = cursor.fetchone()
                moves, inserted = moves + more_moves, inserted + more_inserted
                counts = counts if more_inserted == 0 else None
            refresh_statistics("segments_customerrfm", inserted)  # a first run: rules read the classes at once
        counts = counts or _summary(p)
        few = updated + inserted + gone <= COMPARE_ONLY_MOVERS_UP_TO  # a first run compares everyone at once
        changes = sync_model_segments(
            "rfm:", model_segments(), at=at, assignment_sql=ASSIGNMENT_SQL,
            movers_sql=" UNION ALL ".join(
                [MOVERS_SQL.format(changes=table) for table in changed]
                + ([RECHECKED_SQL.format(rechecks=rechecks)] if rechecks else [])
            ) if few else None,
            known_assignment_sql=" UNION ALL ".join(MOVED_CLASSES_SQL.format(changes=table) for table in changed),
            expected_sizes={f"rfm:{value}": c["count"] for value, c in counts.items()},
        )  # fmt: skip
        run.counts = counts
        run.transitions = moves
        run.duration_ms = int((time.monotonic() - started) * 1000)
        run.save(update_fields=["counts", "transitions", "duration_ms"])
    logger.info(
        "segments.rfm_recomputed",
        extra={"run": run.pk, "as_of": str(p.as_of), "full": run.full, "transitions": moves,
               "updated": updated, "inserted": inserted, "removed": gone, "duration_ms": run.duration_ms,
               "entered": sum(c.entered for c in changes.values()),
               "exited": sum(c.exited for c in changes.values())},
    )  # fmt: skip
    return run
