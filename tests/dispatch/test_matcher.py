"""The matcher's view of whether jobs wait for want of a courier (no I/O): what decides if a
courier's capacity coming back wakes the matching loop."""

from __future__ import annotations

from services.dispatch.matcher import Matcher
from services.dispatch.service.matching import MatchResult
from services.dispatch.settings import DispatchSettings


def found(waiting_for_capacity: bool) -> MatchResult:
    return MatchResult(offered=0, postponed=0, claimed=0, waiting_for_capacity=waiting_for_capacity)


def test_only_the_latest_view_counts_and_an_overlapping_pass_cannot_clear_what_it_did_not_see():
    matcher = Matcher(DispatchSettings())
    assert matcher.waiting_for_capacity, "until a pass ran, capacity may be needed"
    matcher.saw(matcher.pass_begins(), found(False))
    assert not matcher.waiting_for_capacity

    early = matcher.pass_begins()  # a pass reads ...
    matcher.saw(matcher.pass_begins(), found(True))  # ... another postpones jobs and ends first ...
    matcher.saw(early, found(False))  # ... the first, which read before them, ends: it says nothing
    assert matcher.waiting_for_capacity

    matcher.saw(matcher.pass_begins(), found(False), found(True))  # passes run side by side
    assert matcher.waiting_for_capacity
    matcher.saw(matcher.pass_begins(), found(False))
    assert not matcher.waiting_for_capacity
