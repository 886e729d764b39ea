"""The double-entry ledger in wei: every movement is a balanced set of entries, in one transaction.

Conservation: the entries of a posting add up to zero, so the sum of every
account's available and reserved wei is always zero; with the external account
standing for the outside world, customers' balances and reservations plus miners'
payouts plus platform fees equal deposits minus withdrawals at every commit.

No lock is held across round trips. A posting is: claim its key (an insert that
does nothing if the key was used), then a conditional update per account row that
moves the buckets and counters only if the row still allows it (``available >=
amount``, ``active_jobs < limit`` ...) and writes that row's entries; on PostgreSQL
the claim, every row and every entry are one statement. A row refused (no row
changed) makes the caller roll the whole posting back. A row is locked from its statement to the commit, so a
customer's jobs never queue behind a transaction that reads, thinks and writes.

Rows are always touched in one order, so two postings never wait on each other in
a circle: the customer's API key row, the customer's account, a miner's account,
then the platform's or the outside world's account (the rows every settlement
shares come last, to be held the shortest).

On SQLite, where wei are text (``billing.fields``) and SQL arithmetic on them is not
exact, the same movement is read, computed in Python and written back with a
compare-and-swap; SQLite runs one writer at a time anyway.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timezone as dt_timezone

from django.db import connection, transaction
from django.utils import timezone

from billing.exceptions import AlreadyPosted
from billing.models import Account, KeySpend, LedgerEntry, LedgerTransaction
from marketplace.fields import wei_total
from marketplace.rows import quoted

AVAILABLE, RESERVED = LedgerEntry.Bucket.AVAILABLE, LedgerEntry.Bucket.RESERVED
# only these may go below zero: the outside world (deposits), and the platform (refunds it absorbs)
MAY_GO_NEGATIVE = {Account.Kind.EXTERNAL, Account.Kind.PLATFORM}
SQLITE_CAS_TRIES = 20


@dataclass(frozen=True)
class Owner:
    """Whose account row: a customer's, a miner's, or the platform's or outside world's singleton."""

    kind: str
    owner_id: int | None = None

    def lookup(self) -> dict:
        if self.kind == Account.Kind.CUSTOMER:
            return {"customer_id": self.owner_id}
        if self.kind == Account.Kind.MINER:
            return {"miner_id": self.owner_id}
        return {"kind": self.kind}

    def defaults(self) -> dict:
        return {"kind": self.kind, **({} if self.owner_id is None else self.lookup())}


def customer_owner(customer_id: int) -> Owner:
    return Owner(Account.Kind.CUSTOMER, customer_id)


def miner_owner(miner_id: int) -> Owner:
    return Owner(Account.Kind.MINER, miner_id)


PLATFORM = Owner(Account.Kind.PLATFORM)
EXTERNAL = Owner(Account.Kind.EXTERNAL)


@dataclass(frozen=True)
class Move:
    """What one account row gains in a posting, and what the row must still satisfy afterwards.

    ``available`` and ``reserved`` are the row's ledger entries. The counters:
    ``jobs`` moves ``active_jobs``; ``spent`` moves ``month_spent_wei`` if the row counts
    ``month``, and with ``new_month`` a row still counting an earlier month starts
    counting ``month`` from ``spent``. The conditions: ``job_limit`` bounds
    ``active_jobs`` and ``spend_cap`` this month's spending after the move; the buckets
    may not go below zero unless the owner may go negative.
    """

    owner: Owner
    available: int = 0
    reserved: int = 0
    jobs: int = 0
    spent: int = 0
    month: date | None = None
    new_month: bool = False
    job_limit: int | None = None
    spend_cap: int | None = None
    entries: tuple = field(init=False, default=())

    def __post_init__(self) -> None:
        made = []
        if self.available or not self.reserved:
            made.append((AVAILABLE, self.available))
        if self.reserved:
            made.append((RESERVED, self.reserved))
        object.__setattr__(self, "entries", tuple(made))

    @property
    def floor(self) -> bool:
        return self.owner.kind not in MAY_GO_NEGATIVE


def month_of(moment) -> date:
    """The month a spending cap counts ``moment`` in (UTC)."""
    moment = moment.astimezone(dt_timezone.utc) if timezone.is_aware(moment) else moment
    return date(moment.year, moment.month, 1)


# --- accounts ------------------------------------------------------------------------


def _account(owner: Owner) -> Account:
    try:
        return Account.objects.get(**owner.lookup())
    except Account.DoesNotExist:
        _account_create(owner)
        return Account.objects.get(**owner.lookup())


def _account_create(owner: Owner) -> None:
    # two first postings may race to make the row: the second insert does nothing
    Account.objects.bulk_create([Account(**owner.defaults())], ignore_conflicts=True)


def account_for_customer(customer) -> Account:
    return _account(customer_owner(customer.pk))


def account_for_miner(miner) -> Account:
    return _account(miner_owner(miner.pk))


def platform_account() -> Account:
    return _account(PLATFORM)


def external_account() -> Account:
    return _account(EXTERNAL)


# --- postings ------------------------------------------------------------------------


# a posting's key is claimed by an insert that does nothing if the key was used: a used key costs
# no savepoint and leaves the surrounding transaction usable (PostgreSQL aborts it on a unique violation)
_CLAIM = (f"INSERT INTO {LedgerTransaction._meta.db_table} (kind, key, job_id, memo, created_by_id, created_at) "
          "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (key) DO NOTHING RETURNING id")


def _claim_params(kind: str, key: str, job_id: int | None, memo: str, created_by) -> list:
    return [kind, key, job_id, memo[:300], getattr(created_by, "pk", created_by),
            connection.ops.adapt_datetimefield_value(timezone.now())]


def posting_open(*, kind: str, key: str, job_id: int | None = None, memo: str = "", created_by=None) -> int:
    """Claim the posting's key; its id, or ``AlreadyPosted`` if the key was used before."""
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM, _claim_params(kind, key, job_id, memo, created_by))
        row = cursor.fetchone()
    if row is None:
        raise AlreadyPosted(key)
    return row[0]


def posting_apply(*, kind: str, key: str, steps: list, job_id: int | None = None, memo: str = "",
                  created_by=None) -> tuple[int, int | None]:
    """Claim the key and apply ``steps`` (as ``moves_apply``): (the posting's id, the index of
    the first step refused or None). ``AlreadyPosted`` if the key was used before: then no
    step applied.

    On PostgreSQL the claim and the steps are one statement: every step is conditional on
    the claim, the entries name the posting it made. A step refused there (its row refused,
    or does not exist yet) is tried again by ``moves_apply``.
    """
    if connection.vendor == "sqlite":
        posting_id = posting_open(kind=kind, key=key, job_id=job_id, memo=memo, created_by=created_by)
        return posting_id, moves_apply(posting_id, steps)
    posting_id, done = _apply_in_one_statement(None, steps, claim=_claim_params(kind, key, job_id, memo, created_by))
    if posting_id is None:
        raise AlreadyPosted(key)
    if done == len(steps):
        return posting_id, None
    refused = moves_apply(posting_id, steps[done:])
    return posting_id, None if refused is None else done + refused


def posting_exists(key: str) -> bool:
    """Whether a posting claimed this key (a refund, a deposit: each key posts once)."""
    return LedgerTransaction.objects.filter(key=key).exists()


@dataclass(frozen=True)
class KeyMove:
    """What an API key's counters gain in a posting, and the limits they must still meet afterwards."""

    api_key_id: int
    jobs: int = 0
    spent: int = 0
    job_limit: int | None = None
    budget: int | None = None


def moves_apply(posting_id: int, steps: list) -> int | None:
    """Apply ``steps`` (``KeyMove`` and ``Move``, in the ledger's row order) and write their entries.

    Returns None when every step applied, or the index of the first step its row
    refused: the steps before it applied, none after it did (the caller raises, and
    its transaction rolls them back). On PostgreSQL all the steps are one statement,
    each row's update conditional on its own limits and on the step before it having
    applied, so the rows are locked in this order and held from that one statement
    to the commit. A row that does not exist yet is made (it holds nothing), and the
    steps from it on are tried again.
    """
    done, tries, last_refused = 0, 0, None
    while done < len(steps):
        if connection.vendor == "sqlite":
            done += _apply_one_by_one(posting_id, steps[done:])
        else:
            done += _apply_in_one_statement(posting_id, steps[done:])
        if done == len(steps):
            return None
        tries += 1
        if tries > 2 * len(steps) + 2:
            return done
        if not _row_exists(steps[done]):
            _row_create(steps[done])
        elif last_refused == done:
            return done
        else:
            # the row may have been made by another posting after this statement began
            # (it saw no row): a refusal counts only when the row refuses it again
            last_refused = done
    return None


def _row_exists(step) -> bool:
    if isinstance(step, KeyMove):
        return KeySpend.objects.filter(pk=step.api_key_id).exists()
    return Account.objects.filter(**step.owner.lookup()).exists()


def _row_create(step) -> None:
    # two first postings may race to make the row: the second insert does nothing
    if isinstance(step, KeyMove):
        KeySpend.objects.bulk_create([KeySpend(api_key_id=step.api_key_id)], ignore_conflicts=True)
    else:
        _account_create(step.owner)


def _apply_one_by_one(posting_id: int, steps: list) -> int:
    for index, step in enumerate(steps):
        if isinstance(step, KeyMove):
            applied = _key_move_sqlite(step.api_key_id, step.jobs, step.spent, step.job_limit, step.budget)
        else:
            applied = _account_move_sqlite(posting_id, step)
        if not applied:
            return index
    return len(steps)


def _apply_in_one_statement(posting_id: int | None, steps: list, claim: list | None = None):
    """The steps in one statement, for the posting ``posting_id``: how many applied. With the
    parameters of a ``claim`` instead (``_CLAIM``), the posting is made in the same statement
    and every step is conditional on it: then (its id, or None if the key was used; how many applied)."""
    claiming = claim is not None
    ctes, params, writes, write_params = [], [], [], []
    if claiming:
        ctes.append(f"p AS ({_CLAIM})")
        params += claim
    for index, step in enumerate(steps):
        before = f"s{index - 1}" if index else ("p" if claiming else "")
        after = f" AND EXISTS (SELECT 1 FROM {before})" if before else ""
        sql, step_params = _key_sql(step) if isinstance(step, KeyMove) else _account_sql(step)
        ctes.append(f"s{index} AS ({sql}{after} RETURNING {'api_key_id' if isinstance(step, KeyMove) else 'id'} AS id)")
        params += step_params
        if isinstance(step, Move):
            values = ", ".join("(%s, %s::numeric)" for _ in step.entries)
            posting_ref, joined = ("p.id", "p, ") if claiming else ("%s::bigint", "")
            writes.append(f"SELECT {posting_ref}, s{index}.id, e.bucket, e.amount FROM {joined}s{index}, "
                          f"(VALUES {values}) AS e (bucket, amount)")
            write_params += [*([] if claiming else [posting_id]), *[value for entry in step.entries for value in entry]]
    if writes:
        ctes.append(f"written AS (INSERT INTO {LedgerEntry._meta.db_table} (transaction_id, account_id, bucket, "
                    f"amount_wei) {' UNION ALL '.join(writes)})")
        params += write_params
    counted = " + ".join(f"(SELECT count(*) FROM s{index})" for index in range(len(steps))) or "0"
    selected = f"(SELECT id FROM p), {counted}" if claiming else counted
    with connection.cursor() as cursor:
        cursor.execute(f"WITH {', '.join(ctes)} SELECT {selected}", params)
        row = cursor.fetchone()
    return (row[0], row[1]) if claiming else row[0]


def _key_sql(step: KeyMove) -> tuple[str, list]:
    conditions, params = [], [step.jobs, step.spent, step.api_key_id]
    if step.job_limit is not None:
        conditions.append(" AND active_jobs + %s <= %s")
        params += [step.jobs, step.job_limit]
    if step.budget is not None:
        conditions.append(" AND spent_wei + %s::numeric <= %s::numeric")
        params += [step.spent, step.budget]
    return (f"UPDATE {KeySpend._meta.db_table} SET active_jobs = GREATEST(active_jobs + %s, 0), "
            f"spent_wei = spent_wei + %s::numeric WHERE api_key_id = %s{''.join(conditions)}"), params


def _account_sql(move: Move) -> tuple[str, list]:
    month, new_month = move.month, move.new_month and move.month is not None
    # a row still counting an earlier month starts counting this one (a reservation's month)
    rolls = "(%s AND (spend_month IS NULL OR spend_month < %s::date))"
    params = [move.available, move.reserved, move.jobs, month, move.spent, new_month, month, move.spent,
              new_month, month, month, *move.owner.lookup().values()]
    conditions = []
    if move.floor:
        conditions.append(" AND available_wei + %s::numeric >= 0 AND reserved_wei + %s::numeric >= 0")
        params += [move.available, move.reserved]
    if move.job_limit is not None:
        conditions.append(" AND active_jobs + %s <= %s")
        params += [move.jobs, move.job_limit]
    if move.spend_cap is not None:
        conditions.append(" AND (CASE WHEN spend_month = %s::date THEN month_spent_wei ELSE 0 END)"
                          " + %s::numeric <= %s::numeric")
        params += [month, move.spent, move.spend_cap]
    where = " AND ".join(f"{column} = %s" for column in move.owner.lookup())
    return f"""UPDATE {Account._meta.db_table} SET
            available_wei = available_wei + %s::numeric,
            reserved_wei = reserved_wei + %s::numeric,
            active_jobs = GREATEST(active_jobs + %s, 0),
            month_spent_wei = CASE
                WHEN spend_month = %s::date THEN month_spent_wei + %s::numeric
                WHEN {rolls} THEN %s::numeric
                ELSE month_spent_wei END,
            spend_month = CASE WHEN {rolls} THEN %s::date ELSE spend_month END
        WHERE {where}{''.join(conditions)}""", params


# SQLite keeps wei as text (beyond its integers), so a move there is read, computed in Python and
# written back only if the row is as it was read (compare-and-swap). Written out: the ORM's
# compiling of these statements was most of an embedded job's CPU spent on money.
_ACCOUNT_READ = "SELECT id, available_wei, reserved_wei, active_jobs, spend_month, month_spent_wei FROM {table} WHERE {column} = %s"
_ACCOUNT_SWAP = ("UPDATE {table} SET available_wei = %s, reserved_wei = %s, active_jobs = %s, month_spent_wei = %s, "
                 "spend_month = %s WHERE id = %s AND available_wei = %s AND reserved_wei = %s AND active_jobs = %s "
                 "AND month_spent_wei = %s AND spend_month IS %s")
_ENTRY_INSERT = "INSERT INTO {table} (transaction_id, account_id, bucket, amount_wei) VALUES (%s, %s, %s, %s)"
_KEY_READ = "SELECT active_jobs, spent_wei FROM {table} WHERE api_key_id = %s"
_KEY_SWAP = ("UPDATE {table} SET active_jobs = %s, spent_wei = %s "
             "WHERE api_key_id = %s AND active_jobs = %s AND spent_wei = %s")


def _account_move_sqlite(posting_id: int, move: Move) -> bool | None:
    """The same move on SQLite: read, compute in Python, compare-and-swap; None if there is no row."""
    table = quoted(Account._meta.db_table)
    ((column, owner),) = move.owner.lookup().items()
    for _ in range(SQLITE_CAS_TRIES):
        with connection.cursor() as cursor:
            cursor.execute(_ACCOUNT_READ.format(table=table, column=quoted(column)), [owner])
            row = cursor.fetchone()
        if row is None:
            return None
        account_id, available_was, reserved_was, active_was, spend_month, spent_was = row
        month_was = spend_month.isoformat() if spend_month else None  # as stored: text
        available, reserved = int(available_was) + move.available, int(reserved_was) + move.reserved
        counts_month = move.month is not None and spend_month == move.month
        rolls = move.new_month and move.month is not None and (spend_month is None or spend_month < move.month)
        spent_before = int(spent_was) if counts_month else 0
        if move.floor and (available < 0 or reserved < 0):
            return False
        if move.job_limit is not None and active_was + move.jobs > move.job_limit:
            return False
        if move.spend_cap is not None and spent_before + move.spent > move.spend_cap:
            return False
        if counts_month or rolls:
            month_spent, month_written = spent_before + move.spent, move.month.isoformat()
        else:
            month_spent, month_written = int(spent_was), month_was
        with connection.cursor() as cursor:
            # compare-and-swap: a writer that slipped in between makes this one read again
            cursor.execute(_ACCOUNT_SWAP.format(table=table), [
                str(available), str(reserved), max(active_was + move.jobs, 0), str(month_spent), month_written,
                account_id, available_was, reserved_was, active_was, spent_was, month_was])
            if cursor.rowcount != 1:
                continue
            cursor.executemany(_ENTRY_INSERT.format(table=quoted(LedgerEntry._meta.db_table)), [
                (posting_id, account_id, bucket, str(int(amount))) for bucket, amount in move.entries])
        return True
    raise RuntimeError(f"the account of {move.owner} kept changing under this posting")


def _key_move_sqlite(api_key_id, jobs, spent, job_limit, budget) -> bool | None:
    table = quoted(KeySpend._meta.db_table)
    for _ in range(SQLITE_CAS_TRIES):
        with connection.cursor() as cursor:
            cursor.execute(_KEY_READ.format(table=table), [api_key_id])
            row = cursor.fetchone()
            if row is None:
                return None
            active_was, spent_was = row
            if job_limit is not None and active_was + jobs > job_limit:
                return False
            if budget is not None and int(spent_was) + spent > budget:
                return False
            cursor.execute(_KEY_SWAP.format(table=table), [
                max(active_was + jobs, 0), str(int(spent_was) + spent), api_key_id, active_was, spent_was])
            if cursor.rowcount == 1:
                return True
    raise RuntimeError(f"the spend row of API key {api_key_id} kept changing under this posting")


def post(*, kind: str, key: str, moves: list[Move], job_id: int | None = None, memo: str = "",
         created_by=None) -> int:
    """Post one balanced movement of several rows, or nothing; the posting's id.

    ``moves`` come in the ledger's row order (see the module's docstring). Raises
    ``AlreadyPosted`` for a key used before and ``InsufficientFunds`` when a row refuses.
    """
    from billing.exceptions import InsufficientFunds

    if sum(amount for move in moves for _, amount in move.entries) != 0:
        raise ValueError("a ledger posting must balance to zero")
    with transaction.atomic():
        posting_id, refused = posting_apply(kind=kind, key=key, steps=moves, job_id=job_id, memo=memo,
                                            created_by=created_by)
        if refused is not None:
            available = int(_account(moves[refused].owner).available_wei)
            raise InsufficientFunds(f"not enough available balance: {max(available, 0)} wei available")
    return posting_id


# --- reads ---------------------------------------------------------------------------


def ledger_totals() -> dict[str, int]:
    """The figures the conservation equation is made of (the treasury report reads these)."""
    accounts = Account.objects.all()

    def held(kind: str, field: str) -> int:
        return wei_total(accounts.filter(kind=kind), field)

    external = LedgerEntry.objects.filter(account__kind=Account.Kind.EXTERNAL)
    deposits = -wei_total(external.filter(transaction__kind=LedgerTransaction.Kind.DEPOSIT), "amount_wei")
    withdrawals = wei_total(external.filter(transaction__kind=LedgerTransaction.Kind.WITHDRAWAL), "amount_wei")
    return {
        "customer_balances": held(Account.Kind.CUSTOMER, "available_wei"),
        "customer_reservations": held(Account.Kind.CUSTOMER, "reserved_wei"),
        "miner_payouts": held(Account.Kind.MINER, "available_wei") + held(Account.Kind.MINER, "reserved_wei"),
        "platform_fees": held(Account.Kind.PLATFORM, "available_wei") + held(Account.Kind.PLATFORM, "reserved_wei"),
        "deposits": deposits,
        "withdrawals": withdrawals,
        "entries_sum": wei_total(LedgerEntry.objects.all(), "amount_wei"),
    }


def conservation_holds() -> bool:
    t = ledger_totals()
    held = t["customer_balances"] + t["customer_reservations"] + t["miner_payouts"] + t["platform_fees"]
    return held == t["deposits"] - t["withdrawals"] and t["entries_sum"] == 0


def balances_match_entries() -> bool:
    """Every account's two figures are the sums of its own entries (nothing moved a row unposted)."""
    sums: dict = {}
    for account_id, bucket, amount in LedgerEntry.objects.values_list("account_id", "bucket", "amount_wei").iterator():
        sums[account_id, bucket] = sums.get((account_id, bucket), 0) + int(amount)
    return all(
        sums.get((pk, AVAILABLE), 0) == int(available) and sums.get((pk, RESERVED), 0) == int(reserved)
        for pk, available, reserved in Account.objects.values_list("pk", "available_wei", "reserved_wei")
    )
