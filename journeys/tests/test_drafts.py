"""The edits of a journey's draft (journeys/drafts.py): pure functions of its JSON, no database."""

import pytest

from journeys.drafts import (
    NotInDraft,
    Slot,
    draft_of,
    find,
    insert_step,
    move_step,
    new_step_id,
    remove_step,
    seed,
    set_slot,
    slots,
    start_of,
)
from journeys.models import Journey
from journeys.tests.factories import send, wait

VIP = {"predicate": "attribute", "field": "city", "op": "eq", "value": "上海"}


def chain(*step_ids: str) -> dict:
    """A draft whose steps lead one to the next, in this order."""
    steps = [send(step_id, next=following) for step_id, following in zip(step_ids, [*step_ids[1:], None], strict=True)]
    return {"start": step_ids[0], "steps": steps}


def test_a_branch_has_a_way_out_per_branch_then_else():
    step = {"id": "b1", "type": "branch", "branches": [{"label": "上海", "rule": VIP, "next": "s2"}, {"rule": VIP}],
            "else_next": "s3"}  # fmt: skip

    assert slots(step) == [
        Slot("branches.0", "上海", "s2"), Slot("branches.1", "#2", ""), Slot("else_next", "else", "s3"),
    ]  # fmt: skip


def test_a_split_has_a_way_out_per_arm_named_with_its_share():
    step = {"id": "x1", "type": "split", "arms": [{"name": "A", "weight": 30, "next": "s2"},
                                                  {"name": "B", "weight": 70}]}  # fmt: skip

    assert slots(step) == [Slot("arms.0", "A 30%", "s2"), Slot("arms.1", "B 70%", "")]


def test_a_timeout_is_a_way_out_only_when_the_step_has_one():
    without = {"id": "w1", "type": "wait_condition", "rule": VIP, "next": "s2"}
    with_timeout = {**without, "timeout_hours": 24, "timeout_next": "s3"}
    confirmed = send("s1", next="s2", wait_confirmation=True)

    assert slots(without) == [Slot("next", "", "s2")]
    assert slots(with_timeout) == [Slot("next", "matched", "s2"), Slot("timeout_next", "timeout", "s3")]
    assert slots({"id": "e1", "type": "wait_event", "event_type": "content_view"}) == [
        Slot("next", "event", ""), Slot("timeout_next", "timeout", ""),
    ]  # fmt: skip
    assert slots(confirmed) == [Slot("next", "confirmed", "s2"), Slot("timeout_next", "not confirmed", "")]
    assert slots({"id": "x", "type": "exit"}) == []


def test_set_slot_links_and_unlinks_a_way_out():
    step = {"id": "b1", "type": "branch", "branches": [{"label": "a", "rule": VIP, "next": "s2"}], "else_next": "s3"}

    set_slot(step, "branches.0", "s4")
    set_slot(step, "else_next", "")

    assert step == {"id": "b1", "type": "branch", "branches": [{"label": "a", "rule": VIP, "next": "s4"}]}


@pytest.mark.parametrize("key", ["branches.1", "branches.x", "arms.0", "elsewhere"])
def test_set_slot_refuses_a_way_out_the_step_does_not_have(key):
    step = {"id": "b1", "type": "branch", "branches": [{"label": "a", "rule": VIP}]}

    with pytest.raises(NotInDraft, match="No such way out of the step"):
        set_slot(step, key, "s2")

    assert step == {"id": "b1", "type": "branch", "branches": [{"label": "a", "rule": VIP}]}


def test_find_returns_the_step_itself_and_refuses_one_the_draft_does_not_have():
    draft = chain("s1", "s2")

    assert find(draft, "s2") is draft["steps"][1]
    with pytest.raises(NotInDraft, match="No such step"):
        find(draft, "s9")


def test_draft_of_fills_the_missing_parts_and_copies_the_steps():
    steps = [send("s1"), "not a step"]
    journey = Journey(draft={"steps": steps})

    draft = draft_of(journey)
    draft["steps"][0]["text"] = "changed"

    assert draft == {
        "trigger": {"type": "manual"}, "entry_filter": None, "reentry": {"policy": "never"}, "exit": {"policy": "goal"},
        "goal": None, "start": "", "steps": [{**send("s1"), "text": "changed"}],
    }  # fmt: skip
    assert steps[0] == send("s1")


def test_the_start_is_the_drafts_start_or_else_its_first_step():
    assert start_of({"start": "s2", "steps": [send("s1"), send("s2")]}) == "s2"
    assert start_of({"start": "", "steps": [send("s1"), send("s2")]}) == "s1"
    assert start_of({"steps": []}) == ""


def test_a_new_step_id_follows_the_highest_numbered_one():
    assert new_step_id({"steps": [send("s2"), send("s10"), send("welcome"), send("s3x")]}) == "s11"
    assert new_step_id({"steps": []}) == "s1"


def test_a_new_step_leads_on_to_where_its_way_in_led():
    assert seed("wait", "s2") == {"type": "wait", "next": "s2"}
    assert seed("wait", "") == {"type": "wait"}
    assert seed("exit", "s2") == {"type": "exit"}
    assert seed("branch", "s2") == {"type": "branch", "else_next": "s2"}
    assert seed("split", "s2") == {"type": "split", "arms": [{"name": "A", "weight": 50, "next": "s2"},
                                                              {"name": "B", "weight": 50, "next": "s2"}]}  # fmt: skip
    assert seed("split", "") == {"type": "split", "arms": [{"name": "A", "weight": 50}, {"name": "B", "weight": 50}]}


def test_inserting_after_a_step_puts_the_new_step_on_that_way_out_and_after_it_in_the_list():
    draft = chain("s1", "s2")

    insert_step(draft, wait("s3", next="s2", mode="duration", days=1), source="s1", slot="next")

    assert draft == {"start": "s1", "steps": [send("s1", next="s3"), wait("s3", next="s2", mode="duration", days=1),
                                              send("s2")]}  # fmt: skip


def test_inserting_without_a_source_makes_the_new_step_the_start():
    draft = chain("s1")

    insert_step(draft, send("s2", next="s1"), source="", slot="next")

    assert draft == {"start": "s2", "steps": [send("s2", next="s1"), send("s1")]}


def test_removing_a_step_relinks_what_led_to_it_to_where_it_led():
    draft = chain("s1", "s2", "s3")

    remove_step(draft, "s2")

    assert draft == {"start": "s1", "steps": [send("s1", next="s3"), send("s3")]}


def test_removing_a_step_with_several_ways_on_ends_the_journey_where_it_was():
    branch = {"id": "b2", "type": "branch", "branches": [{"label": "a", "rule": VIP, "next": "s3"}], "else_next": "s4"}
    draft = {"start": "s1", "steps": [send("s1", next="b2"), branch, send("s3"), send("s4")]}

    remove_step(draft, "b2")

    assert draft == {"start": "s1", "steps": [send("s1"), send("s3"), send("s4")]}


def test_removing_the_start_makes_where_it_led_the_start():
    draft = chain("s1", "s2")

    remove_step(draft, "s1")

    assert draft == {"start": "s2", "steps": [send("s2")]}


def test_moving_a_step_up_and_down_swaps_it_with_its_neighbour_in_the_chain():
    draft = chain("s1", "s2", "s3")

    moved_up = move_step(draft, "s2", "up")
    after_up = {"start": draft["start"], "steps": [dict(step) for step in draft["steps"]]}
    moved_down = move_step(draft, "s2", "down")

    assert moved_up is True
    assert after_up == {"start": "s2", "steps": [send("s2", next="s1"), send("s1", next="s3"), send("s3")]}
    assert moved_down is True
    assert draft == chain("s1", "s2", "s3")


def test_a_step_not_in_a_straight_chain_does_not_move():
    branch = {"id": "b1", "type": "branch", "branches": [{"label": "a", "rule": VIP, "next": "s2"}], "else_next": "s3"}
    draft = {"start": "b1", "steps": [branch, send("s2"), send("s3")]}
    before = {"start": "b1", "steps": [dict(step) for step in draft["steps"]]}

    assert move_step(draft, "s2", "up") is False
    assert move_step(draft, "b1", "down") is False
    assert move_step(draft, "s3", "down") is False  # the last step has nothing after it
    assert draft == before
