"""The pure policies of a grant's life, on the fake clock: the one backoff, how much validity a
read insists on, and the lease (take, settle under its version, record a failure); settling
runs against the real PostgreSQL, since it locks the row."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from tests.fixtures import FakeClock
from tests.helpers import store_account_grant
from tiktok_auth_service import lease
from tiktok_auth_service.backoff import Backoff
from tiktok_auth_service.grants.refresh import backing_off, refresh_need
from tiktok_auth_service.models.grants import Flow, Grant, GrantStatus
from tiktok_auth_service.repository import Repository
from tiktok_auth_service.service import Service
from tiktok_auth_service.tiktok.retry import RetryPolicy


def a_grant(clock: FakeClock) -> Grant:
    return Grant(
        id=uuid.uuid4(),
        flow=Flow.ADVERTISER,
        key_id="",
        access_token_enc=b"",
        scope=[],
        status=GrantStatus.ACTIVE,
        version=3,
        created_at=clock.now(),
        updated_at=clock.now(),
    )


class TestBackoff:
    def test_doubles_from_the_base_up_to_the_cap(self) -> None:
        waits = [Backoff(base=0.5, cap=8).delay(attempt) for attempt in range(1, 8)]
        assert waits == [0.5, 1, 2, 4, 8, 8, 8]

    def test_attempt_zero_waits_the_base(self) -> None:
        assert Backoff(base=30, cap=600).delay(0) == 30

    def test_a_grant_failing_for_months_stays_at_the_cap(self) -> None:
        assert Backoff(base=30, cap=600).delay(100_000) == 600

    def test_tiktok_retries_use_it_as_their_ceiling(self) -> None:
        policy = RetryPolicy(base_delay=0.25, max_delay=3)
        assert [policy.ceiling(n) for n in (1, 2, 3, 4, 5)] == [0.25, 0.5, 1, 2, 3]

    def test_failure_backoff_of_a_grant(self) -> None:
        waits = [lease.failure_backoff(n).total_seconds() for n in (0, 1, 2, 5, 6, 50)]
        assert waits == [30, 30, 60, 480, 600, 600]


class TestRefreshNeed:
    def test_what_was_asked_when_never_refreshed(self) -> None:
        clock = FakeClock()
        need = refresh_need(timedelta(minutes=5), None, clock.now() + timedelta(minutes=1))
        assert need == timedelta(minutes=5)

    def test_never_more_than_half_the_tokens_lifetime(self) -> None:
        clock = FakeClock()
        refreshed = clock.now()
        need = refresh_need(timedelta(hours=2), refreshed, refreshed + timedelta(hours=1))
        assert need == timedelta(minutes=30)

    def test_what_was_asked_when_it_is_less_than_half(self) -> None:
        clock = FakeClock()
        refreshed = clock.now()
        need = refresh_need(timedelta(minutes=5), refreshed, refreshed + timedelta(hours=24))
        assert need == timedelta(minutes=5)

    def test_a_failed_refresh_backs_off_then_lets_go(self) -> None:
        clock = FakeClock()
        failed_at = clock.now()
        assert not backing_off(None, None, clock.now())
        clock.advance(seconds=59)
        assert backing_off(failed_at, 2, clock.now())
        clock.advance(seconds=1)
        assert not backing_off(failed_at, 2, clock.now())


class TestLease:
    def test_taken_lease_is_held_until_its_term(self) -> None:
        clock = FakeClock()
        grant = a_grant(clock)
        assert not lease.held(grant, clock.now())
        lease.take(grant, clock.now(), 90)
        assert grant.version == 4
        clock.advance(seconds=89)
        assert lease.held(grant, clock.now())
        clock.advance(seconds=1)
        assert not lease.held(grant, clock.now())

    def test_release_frees_it_and_moves_the_version_on(self) -> None:
        clock = FakeClock()
        grant = a_grant(clock)
        lease.take(grant, clock.now(), 90)
        lease.release(grant)
        assert not lease.held(grant, clock.now())
        assert grant.version == 5

    def test_a_transient_failure_is_recorded_with_its_backoff(self) -> None:
        clock = FakeClock()
        grant = a_grant(clock)
        again = lease.record_transient_failure(grant, clock.now(), 50002, "busy")
        assert again == clock.now() + timedelta(seconds=30)
        again = lease.record_transient_failure(grant, clock.now(), None, "timeout")
        assert again == clock.now() + timedelta(seconds=60)
        assert (grant.failures, grant.last_failure_code) == (2, None)
        assert grant.last_failure_message == "timeout"

    def test_kept_for_its_backoff_the_lease_is_held_that_long(self) -> None:
        clock = FakeClock()
        grant = a_grant(clock)
        grant.failures = 2
        lease.keep_for_backoff(grant, clock.now())
        clock.advance(seconds=119)
        assert lease.held(grant, clock.now())
        clock.advance(seconds=1)
        assert not lease.held(grant, clock.now())


class TestSettle:
    async def test_settles_on_the_row_that_carries_the_leased_version(
        self, service: Service, clock: FakeClock
    ) -> None:
        grant_id = await store_account_grant(service, "-000lease", clock.now() + timedelta(1))
        async with service.db.session() as session, session.begin():
            leased = await Repository(session).lock_grant(grant_id)
            assert leased is not None
            lease.take(leased, clock.now(), 90)
        async with service.db.session() as session, session.begin():
            row = await lease.settle(Repository(session), leased)
            assert (row.id, row.version) == (grant_id, leased.version)

    async def test_raises_when_another_moved_the_version_on(
        self, service: Service, clock: FakeClock
    ) -> None:
        grant_id = await store_account_grant(service, "-000taken", clock.now() + timedelta(1))
        async with service.db.session() as session, session.begin():
            leased = await Repository(session).lock_grant(grant_id)
            assert leased is not None
            lease.take(leased, clock.now(), 90)
        clock.advance(seconds=91)  # ran out, and another took it over
        async with service.db.session() as session, session.begin():
            other = await Repository(session).lock_grant(grant_id)
            assert other is not None and not lease.held(other, clock.now())
            lease.take(other, clock.now(), 90)
        async with service.db.session() as session, session.begin():
            with pytest.raises(lease.Superseded):
                await lease.settle(Repository(session), leased)

    async def test_raises_when_the_grant_is_gone(self, service: Service, clock: FakeClock) -> None:
        with pytest.raises(lease.Superseded):
            async with service.db.session() as session, session.begin():
                await lease.settle(Repository(session), a_grant(clock))
