/* pgsql-state's fencing and lease protocol, in Promela, for spin.
 *
 * ND data nodes (A, B, and C when ND = 3) and a witness (W), in discrete
 * time (a tick is one second of real time). A starts as the primary on
 * timeline 1 with a confirming verdict; the others are its standbys. At
 * any tick, an external tool may promote one standby (timeline 2) while A
 * runs on: the zombie. Faults, each enabled by a configuration (check.sh)
 * and bounded in number by MAXF, come one per tick: any partition of the
 * links (non-transitive ones included), a peer crashed or hung and back, a
 * postmaster hung and resumed, A's Postgres stopped and started again (as
 * the zombie or as a standby), a primary's Postgres restarted at once, a
 * reconciler that stops and goes on, a stranger sending claims, and a
 * voter's record wiped (its disk lost, `claims init`), a renewal process
 * stopped or hung, a run or renewal round killed before its write.
 *
 * Each tick: (1) at most one event; (2) the reconcilers whose timer is due
 * run, in any order, the first one's asks possibly spanning the others';
 * (3) each responder's word is read, the instant
 * HAProxy or a client could ask; (4) HAProxy starts and completes checks;
 * (5) the properties are asserted; (6) time advances, on each node's own
 * clock (which may drift: DRIFT).
 *
 * Properties (assertions, checked at every tick):
 *   P1  never two responders answer `production` in the same tick;
 *   P2  never two servers UP in HAProxy's prod in the same tick, from its
 *       start (a server going DOWN in a tick still counts as UP in it);
 *   P3  after a promotion, with no fault but A stopping or restarting, the
 *       promoted node answers `production` within P3_BOUND ticks;
 *   P4  in a planned switchover (A stopped before the promotion, and not
 *       back as a primary), the promoted node answers `production` before
 *       q + W: the lease term is skipped and only HAProxy's term H waited;
 *   P5  the legitimate primary, restarted while it answers `production`,
 *       with no other fault, answers it again within a run: no wait;
 *   P6  a promotion after the voters last confirmed A more than L' + H'
 *       ago (a machine lost long before), with no fault after it, answers
 *       `production` within runs and the cache, without the lease's wait;
 *   P7  once a node has answered `production` on a timeline, no node
 *       answers it on a lower one (the successor's writes are not lost).
 *   P8  with PROMOTE_CHECK, a promotion happens only once A is out of
 *       HAProxy's prod pool;
 *   P9  with CHECK_P9, a primary with no fault and no promotion answers
 *       `production` at every tick (the renewal keeps its lease).
 *
 * The rules are those of src/fencing/decide/mod.rs; each mutation macro
 * weakens one (check.sh runs them and expects a counterexample from each).
 */

#include "params.pml"

#ifndef ND
#define ND 2
#endif
#define NV (ND + 1)          /* voters: the data nodes and the witness */
#define NW ND                /* the witness's index */
#define MAJ (NV / 2 + 1)     /* a majority of all configured voters */
#define NA 0
#define NB 1

#define PG_DOWN    0
#define PG_PRIMARY 1
#define PG_STANDBY 2

#define V_NONE     0
#define V_PROD     1
#define V_FENCED   2
#define V_STANDBY  3

/* One bit per link between two voters x < y. */
#define LI(x, y) ((x) * (2 * NV - (x) - 1) / 2 + (y) - (x) - 1)
#define LIDX(x, y) ((x) < (y) -> LI(x, y) : LI(y, x))
#define LINKUP(x, y) ((links >> LIDX(x, y)) & 1)
#define NLINKS (NV * (NV - 1) / 2)

/* What the configuration lets happen (check.sh sets these). */
#ifndef MAXF
#define MAXF 2
#endif
#ifndef F_LINK
#define F_LINK 0
#endif
#ifndef F_PEER
#define F_PEER 0
#endif
#ifndef F_PGHANG
#define F_PGHANG 0
#endif
#ifndef F_STOP
#define F_STOP 0
#endif
#ifndef F_RESTART
#define F_RESTART 0
#endif
#ifndef F_RECON
#define F_RECON 0
#endif
#ifndef F_STRANGER
#define F_STRANGER 0
#endif
#ifndef F_WIPE
#define F_WIPE 0
#endif
/* Which links (bit LI), peers (bit n) and nodes the faults may touch: all
 * unless a configuration narrows them. */
#ifndef LINK_MASK
#define LINK_MASK ((1 << NLINKS) - 1)
#endif
#ifndef PEER_MASK
#define PEER_MASK ((1 << NV) - 1)
#endif
#ifndef NODE_MASK
#define NODE_MASK ((1 << ND) - 1)
#endif
#ifndef WIPE_MASK
#define WIPE_MASK ((1 << NV) - 1)
#endif
/* Which standbys the tool may promote (bit n): B, and C when ND = 3. */
#ifndef PROMOTE_MASK
#define PROMOTE_MASK (((1 << ND) - 1) & ~1)
#endif

/* The rules as built (1), or as they were (0). */
#ifndef AGES          /* the voters keep the lease's clock (confirmation ages) */
#define AGES 1
#endif
#ifndef OVERLAP       /* H may overlap the time since the old lease ended */
#define OVERLAP 1
#endif
#ifndef RESTART_RULE  /* a restart of the confirmed primary needs no wait */
#define RESTART_RULE 1
#endif

/* Mutations: each weakens one rule; all 0 is the design as built. */
#ifndef NO_RECORDS          /* the first design: no claim records */
#define NO_RECORDS 0
#endif
#ifndef MEMORY_RECORDS      /* records kept in memory: a restart forgets */
#define MEMORY_RECORDS 0
#endif
#ifndef REACHABLE_MAJORITY  /* majority over the voters reached, not all */
#define REACHABLE_MAJORITY 0
#endif
#ifndef NO_VERIFY           /* inbound claims accepted without asking back */
#define NO_VERIFY 0
#endif
#ifndef SHORTCUT_ON_TIMEOUT /* a hung postmaster taken for a stopped one */
#define SHORTCUT_ON_TIMEOUT 0
#endif
#ifndef NO_SHORTCUT         /* the quiet node's shortcut not taken */
#define NO_SHORTCUT 0
#endif
#ifndef START_UP            /* HAProxy 2.6 without the server-state file */
#define START_UP 0
#endif
#ifndef MTH_SMALLEST        /* the m-th smallest age instead of the (m-1)-th */
#define MTH_SMALLEST 0
#endif
#ifndef NONHOLDER_AGE       /* a voter not holding the claim counts its age */
#define NONHOLDER_AGE 0
#endif
#ifndef RESTART_FORGETS     /* a restarted voter reports long-ago ages */
#define RESTART_FORGETS 0
#endif
#ifndef RESTART_NO_MAJORITY /* the restart rule without the majority check */
#define RESTART_NO_MAJORITY 0
#endif
#ifndef NO_DRIFT_COMP       /* L' and H' without the drift factor */
#define NO_DRIFT_COMP 0
#endif
/* NO_DRIFT_L, NO_DRIFT_H (params.pml): the drift factor on one of them. */
#ifndef REACHED_NOT_HOLDERS /* majority of voters reached, not of holders */
#define REACHED_NOT_HOLDERS 0
#endif
#ifndef RESTART_ANY_VERDICT /* the restart rule after any previous verdict */
#define RESTART_ANY_VERDICT 0
#endif
#ifndef CONFIRM_FROM_FIRST_READ /* a voter confirms from the record it read
                                 * first, not the one it returns */
#define CONFIRM_FROM_FIRST_READ 0
#endif
#ifndef INIT_VOTES_AT_ONCE  /* a re-initialised voter votes before catching up */
#define INIT_VOTES_AT_ONCE 0
#endif
#ifndef CATCH_UP_HALF       /* it catches up from half of the others, not more */
#define CATCH_UP_HALF 0
#endif
#ifndef DOUBLE_SELF         /* each data node lists itself as a neighbour:
                             * its own vote counts twice, of NV + 1 voters */
#define DOUBLE_SELF 0
#endif

/* The renewal (RENEW, params.pml) and its faults and mutations. */
#ifndef F_RENEW             /* a renewal process stopped or hung, and back */
#define F_RENEW 0
#endif
#ifndef F_KILL              /* a run or a round killed after its voters
                             * confirmed it, before it wrote its verdict;
                             * its process stays stopped */
#define F_KILL 0
#endif
#ifndef RENEW_OVER_FENCE    /* a renewal extends a fenced verdict (one
                             * sitting out its wait) into `production` */
#define RENEW_OVER_FENCE 0
#endif
#ifndef RENEW_CREATES       /* a renewal writes `production` over any
                             * verdict (a standby's, a lapsed one, another
                             * postmaster's) */
#define RENEW_CREATES 0
#endif
#ifndef T0_AFTER            /* the start time taken after the asks (the
                             * phases a run and a round share) */
#define T0_AFTER 0
#endif
#ifndef LOCAL_L             /* the wait from the voters' ages and the
                             * waiting node's own L, not what each voter
                             * says is left of the claimant's declared L */
#define LOCAL_L 0
#endif
#ifndef LAST_DECLARED       /* a voter keeps the last declared lease, not
                             * the latest end of any */
#define LAST_DECLARED 0
#endif
/* promote-check gates every promotion (the HA tool's validation hook). */
#ifndef PROMOTE_CHECK
#define PROMOTE_CHECK 0
#endif
#ifndef PC_NO_H             /* promote-check counts the lease without H' */
#define PC_NO_H 0
#endif
#ifndef NO_RISE_CREDIT      /* ... or without the successor's rise (H') */
#define NO_RISE_CREDIT 0
#endif
#ifndef PC_ONE_SHORT        /* ... or lets through one voter more than
                               m - 2 that still sees something left */
#define PC_ONE_SHORT 0
#endif
/* Sanity: any promotion promote-check lets through breaks P8, to show
 * that the gate opens at all. */
#ifndef SANITY_PROMOTED
#define SANITY_PROMOTED 0
#endif
/* P9: a primary with no fault and no promotion never stops answering
 * `production` (the renewal's timing). */
#ifndef CHECK_P9
#define CHECK_P9 0
#endif
/* A's renewal round lost (every ask timed out: a blip of the network),
 * never two in a row; not a fault. */
#ifndef BLIPS
#define BLIPS CHECK_P9
#endif

/* Two runs of a tick may interleave: the first one's voters read their
 * records before the others' runs and answer after them. */
#ifndef SPAN
#define SPAN 1
#endif

#ifndef LATE_T0
#define LATE_T0 0
#endif
/* Timer activations a deadline late as well as on time. */
#ifndef JITTER
#define JITTER 0
#endif

/* P2 off, to show that a mutation breaks P1 itself. */
#ifndef CHECK_P2
#define CHECK_P2 1
#endif

/* P3 to P6 off, to show that a mutation breaks P1 or P2 too. */
#ifndef CHECK_LIVE
#define CHECK_LIVE 1
#endif

/* P7 is checked where a record can be lost (F_WIPE). Elsewhere records
 * only rise, and a majority holding a higher claim meets every majority a
 * lower one would need: P7 holds there for the reason P1 does (and the
 * state it needs would cost a seventh more). */
#ifndef CHECK_P7
#define CHECK_P7 F_WIPE
#endif

/* The voters a data node counts (configured), and a majority of them. */
#define NVC (NV + DOUBLE_SELF)
#define MAJC (NVC / 2 + 1)
/* A returned record that is no record: its voter is catching up. */
#define NOREC 255

/* One run: the timer's interval, and gathering up to the deadline; with
 * drift, a slow clock stretches the interval by one tick in DRIFT_PERIOD. */
#define RUN (WATCHDOG + DEADLINE + DRIFT)
#ifndef P3_BOUND
#define P3_BOUND (WAIT + 3 * RUN + CACHE + 1)
#endif
/* q + H, plus one run's lateness: before q + W unless H + R + D >= W. */
#define P4_BOUND (SHORT_WAIT + RUN)
/* The restart itself, then a run (the timer's next, up to RUN away). */
#define P5_BOUND (RUN + 1)
/* Three runs and the cache, as P3, but the lease's wait skipped; without
 * the overlap, H' is still waited. */
#define P6_BOUND ((1 - OVERLAP) * HTERM_P + 3 * RUN + CACHE + 1)

/* Postgres, per data node. */
byte pg[ND];
byte tl[ND];
bit epoch[ND];       /* which postmaster: flips at each start */
bit hung[ND];        /* postmaster hung (SIGSTOP) */
byte ups[ND];        /* a standby's upstream */

/* Processes and links. */
bit peerup[NV];      /* the peer answers (not crashed, not hung) */
bit recon[ND];       /* the reconciler's timer still runs */
byte links;          /* LINKUP(x, y) */

/* Claim records: the highest timeline seen claimed, and by whom (bit n). */
byte rtl[NV];
byte rnodes[NV];
/* Re-initialised (`claims init`) and not caught up yet: it casts no vote. */
bit cu[NV];

/* What is left of A's lease (and HAProxy's term after it) as voter v
 * sees it: the latest end of any lease A declared when v returned a record
 * holding A's claim to A's ask (L' + H' of A's L, or more if an earlier
 * confirmation of a longer one ends later), counting down on v's clock to
 * 0. A voter that starts sets it to CONF_TOP, the longest any node may
 * declare, since it cannot know what it answered before.
 *
 * Only A's confirmations are kept. A run has one promotion, so A is the
 * only other claimant whose lease a waiting node must sit out: the
 * standbys never claimed before it (every voter's age of them is past
 * L' + H'), and once a node is promoted nobody else can become legitimate
 * to wait for it. Keeping the others' would only multiply the states. */
byte crem[NV];
/* The same for every claimant a voter has not confirmed since it started
 * (it reports its uptime as their age): L' + H' when it starts, counting
 * down. The model's voters started long before the run (0). */
byte vup[NV];

/* The renewal process of each data node runs (not stopped, not hung). */
bit rnw[ND];
/* The node still runs the old config, whose lease is LEASE_OLD (SHRINK). */
bit lbig[ND];
/* LOCAL_L only: ticks since voter v last confirmed A (else 0). */
byte cage[NV];
/* PROMOTE_CHECK only: ticks since crem[v] ran out, up to RISE_CREDIT. H
 * counts the successor's own rise ((RISE - 1) fast checks) towards the
 * old primary's fall, so HAProxy may keep the old one UP that long after
 * L + H: promote-check, which wants it gone before the promotion, sits
 * that out as well. */
#define RISE_CREDIT (NO_RISE_CREDIT -> 0 : (RISE - 1) * FASTINTER)
byte cz[NV];

/* The witness's answer cache: the masters it saw, and for how long. */
byte wc_left;
byte wc_masters;

/* Verdict files. */
byte vkind[ND];
byte vtl[ND];
bit vepoch[ND];
byte vlease[ND];     /* ticks (of the node's clock) until expires */
byte vwait[ND];      /* ticks (of the node's clock) until wait_until */
bit vhaswait[ND];    /* wait_until is set (carried to the next run) */
byte rnext[ND];      /* ticks until the reconciler runs */

/* HAProxy's prod pool (real time). */
bit up[ND];
bit going_down[ND];
byte hcount[ND];     /* consecutive results towards rise (DOWN) or fall (UP) */
byte hnext[ND];      /* ticks until the next check starts */
bit hpend[ND];       /* a check is in flight */
bit hok[ND];
byte hdelay[ND];     /* ticks until it completes */

/* Clocks: 0 true, 1 slow (skips a tick every DRIFT_PERIOD), 2 fast (counts
 * one twice); cph is the phase, the same for every clock. */
byte ck[NV];
byte cph;

/* Constant 1: they name the property in an assertion's report. */
bit P1 = 1;
bit P2 = 1;
bit P3 = 1;
bit P4 = 1;
bit P5 = 1;
bit P6 = 1;
bit P7 = 1;
bit P8 = 1;
bit P9 = 1;

/* Bookkeeping for the properties. */
byte faults;
bit promoted;
byte pn;             /* the promoted node */
bit healthy = 1;
bit planned;
bit qset;            /* the promoted node's wait has started (q) */
byte since_promo;
byte since_q;
bit rarmed;          /* P5: a producing primary restarted, nothing since */
byte rnode;
byte since_restart;
bit farmed;          /* P6: promoted long after A's last confirmation */
byte hiprod = 1;     /* P7: the highest timeline that answered `production` */

/* The run whose voters read their records before the other runs of the
 * tick and answer after them (ND: none), and what they read (a tick's
 * scratch). */
byte splitme = ND;
byte snt[NV];
byte sns[NV];
/* The tick's other choices: whose run or round is killed before its write
 * (ND: none) and which of the two it is; whether the renewals run before
 * the full runs. */
byte killme = ND;
bit killren;
bit rfirst;
bit lost;            /* A's round is lost this tick (BLIPS) */
bit lostprev;        /* ... and was the tick before */
/* promote-check's answer for each data node, this tick (bit n). */
byte pcok;

#if ND > 2
#define ANY_PRIMARY ((pg[NA] == PG_PRIMARY && !hung[NA]) || (pg[NB] == PG_PRIMARY && !hung[NB]) \
                     || (pg[2] == PG_PRIMARY && !hung[2]))
#else
#define ANY_PRIMARY ((pg[NA] == PG_PRIMARY && !hung[NA]) || (pg[NB] == PG_PRIMARY && !hung[NB]))
#endif
#define PRODUCING(n) (pg[n] == PG_PRIMARY && !hung[n] && vkind[n] == V_PROD \
                      && vtl[n] == tl[n] && vepoch[n] == epoch[n] && vlease[n] > 0)

/* The lease node n declares, and what a confirmation of it leaves. */
#define LN(n) ((SHRINK && lbig[n]) -> LEASE_OLD : LEASE)
#define CONF_OF(n) ((SHRINK && lbig[n]) -> CONF_OLD : CONF_MAX)

/* Raise voter v's record with the claim (node n, timeline t). */
inline raise(rv_, rn_, rt_) {
  if
  :: (rt_) > rtl[rv_] -> rtl[rv_] = (rt_); rnodes[rv_] = (1 << (rn_))
  :: (rt_) > 0 && (rt_) == rtl[rv_] -> rnodes[rv_] = rnodes[rv_] | (1 << (rn_))
  :: else -> skip
  fi
}

inline raise_set(sv_, st_, ss_) {
  k = 0;
  do
  :: k < ND -> if :: ((ss_) >> k) & 1 -> raise(sv_, k, st_) :: else -> skip fi; k++
  :: else -> break
  od
}

/* Rule 1 and 2: keep the highest timeline and every node claiming it. */
inline cand(cn_, ct_) {
  if
  :: (ct_) > ctl -> ctl = (ct_); cset = (1 << (cn_))
  :: (ct_) > 0 && (ct_) == ctl -> cset = cset | (1 << (cn_))
  :: else -> skip
  fi
}

inline cand_set(ct2_, cs2_) {
  k = 0;
  do
  :: k < ND -> if :: ((cs2_) >> k) & 1 -> cand(k, ct2_) :: else -> skip fi; k++
  :: else -> break
  od
}

/* Rule 3(b): a voter's record, as returned, holds node n's claim on
 * n's own timeline. */
#define HOLDS(t, set, n) (!NO_RECORDS && (t) == tl[n] && ((set) & (1 << (n))))

/* A data node's peer answers: it first raises its record from its own
 * Postgres. */
inline own_postgres_raises(ox_) {
  if
  :: !NO_RECORDS && pg[ox_] == PG_PRIMARY && !hung[ox_] -> raise(ox_, ox_, tl[ox_])
  :: else -> skip
  fi
}

/* Voter v returned a record holding node i's claim to i's ask: v
 * confirms i now (it sets confirmed_i before it answers). */
inline confirm(cv_, ci_) {
  holders++; heldmask = heldmask | (1 << (cv_));
  if
  :: (ci_) == NA ->
    /* The latest end of any lease A declared (or, mutated, the last). */
    if
    :: LAST_DECLARED || crem[cv_] < CONF_OF(NA) -> crem[cv_] = CONF_OF(NA)
    :: else -> skip
    fi;
    cage[cv_] = 0; cz[cv_] = 0
  :: else -> skip
  fi
}

/* The wait of node i, whose run just found it the legitimate primary
 * with a majority: for every other data node x, what can be left of x's
 * lease, from the ages the voters other than x returned. A voter counts
 * with its age only when its returned record holds i's claim (it can
 * never confirm x again); every other voter, unreachable or not holding
 * it yet, counts as 0 age (all of L' + H' left). The (m-1)-th smallest
 * age is the (m-1)-th largest of what is left. A node seen quiet (in
 * recovery, or not running) can hold no lease: at most H' is left of it. */
inline age_wait(ai_) {
  w = 0; x = 0;
  do
  :: x < ND ->
    if
    :: x != ai_ ->
      /* The (MAJ - 1)-th (or, mutated, MAJ-th) largest of the voters'
       * remaining-lease values: the smallest r such that fewer than that
       * many voters see more than r. */
      nth = MAJC - 1 + MTH_SMALLEST;
      r = 0;
      do
      :: r < CONF_TOP ->
        cnt = 0; v = 0;
        do
        :: v < NV ->
          if
          :: v != x ->
            if
            :: (((heldmask >> v) & 1) || NONHOLDER_AGE) && x == NA && !LOCAL_L -> val = crem[v]
            :: (((heldmask >> v) & 1) || NONHOLDER_AGE) && x == NA && LOCAL_L ->
              val = (CONF_OF(ai_) > cage[v] -> CONF_OF(ai_) - cage[v] : 0)
            :: (((heldmask >> v) & 1) || NONHOLDER_AGE) && x != NA -> val = vup[v]
            :: else -> val = CONF_TOP
            fi;
            if :: val > r -> cnt = cnt + (DOUBLE_SELF && v == ai_ -> 2 : 1) :: else -> skip fi
          :: else -> skip
          fi;
          v++
        :: else -> break
        od;
        if :: cnt < nth -> break :: else -> r++ fi
      :: else -> break
      od;
      /* r is left of x's lease and H' (OVERLAP), or of its lease (+ H'). */
      if
      :: OVERLAP -> wx = r
      :: else -> wx = (r > HTERM_P -> r - HTERM_P : 0) + HTERM_P
      fi;
      if
      :: ((quietmask >> x) & 1) && !NO_SHORTCUT && wx > SHORT_WAIT -> wx = SHORT_WAIT
      :: else -> skip
      fi;
      if :: wx > w -> w = wx :: else -> skip fi
    :: else -> skip
    fi;
    x++
  :: else -> break
  od
}

/* Voter v catches up after `claims init`: it votes again only once it has
 * read the records of more than half of the other voters (that are not
 * catching up themselves) and raised its own to the highest of them. Any
 * majority that ever held a claim intersects them. */
inline catch_up(cuv_) {
  if
  :: cu[cuv_] ->
    cnt = 0; u = 0;
    do
    :: u < NV ->
      if :: u != cuv_ && LINKUP(u, cuv_) && peerup[u] && !cu[u] -> cnt++ :: else -> skip fi;
      u++
    :: else -> break
    od;
    if
    :: cnt * 2 > NV - 1 - CATCH_UP_HALF ->
      u = 0;
      do
      :: u < NV ->
        if :: u != cuv_ && LINKUP(u, cuv_) && peerup[u] && !cu[u] -> raise_set(cuv_, rtl[u], rnodes[u]) :: else -> skip fi;
        u++
      :: else -> break
      od;
      cu[cuv_] = 0
    :: else -> skip
    fi;
    cnt = 0; u = 0
  :: else -> skip
  fi
}

/* What voter rv_ returns to rm_'s ask: the record it holds now (it
 * confirms from this one), or none while it is catching up. Mutated, the
 * run that spans the others gets, and is confirmed from, the record each
 * voter read before them. */
inline returned(rm_, rv_) {
  if
  :: NO_RECORDS -> st = 0; ss = 0
  :: !NO_RECORDS && CONFIRM_FROM_FIRST_READ && rm_ == splitme -> st = snt[rv_]; ss = sns[rv_]
  :: !NO_RECORDS && !(CONFIRM_FROM_FIRST_READ && rm_ == splitme) ->
    if
    :: cu[rv_] -> st = NOREC; ss = 0
    :: else -> st = rtl[rv_]; ss = rnodes[rv_]
    fi
  fi
}

/* The asker learns the record rv_ returned (st, ss), and counts it. */
inline take_record(rm_, rv_) {
  if
  :: st != NOREC ->
    reached++;
    if :: !NO_RECORDS -> cand_set(st, ss); raise_set(rm_, st, ss) :: else -> skip fi;
    if :: lp && HOLDS(st, ss, rm_) -> confirm(rv_, rm_) :: else -> skip fi
  :: else -> skip
  fi
}

/* One run of node i's reconciler: gather, raise its record, decide, write
 * the verdict. Atomic at the end of gathering; t0 was `delta` ticks
 * earlier, so the lease runs from there. It is two steps: the asks, up to
 * each voter reading its record (raising it first from its own Postgres,
 * the witness's fan-out and the asker's verified claim); then the
 * answers, the decision and the verdict. Another run of the same tick
 * may come between them (splitme). */
#define RUNS(n) (recon[n] && pg[n] != PG_DOWN && !hung[n])

inline asks(me_) {
  lp = (pg[me_] == PG_PRIMARY);
  v = 0;
  do
  :: v < NV ->
    if
    :: v != me_ && v < ND && LINKUP(me_, v) && peerup[v] ->
      /* A data node's peer: it raises its record from its own Postgres,
       * and with our claim, verified by asking our peer back. */
      catch_up(v);
      own_postgres_raises(v);
      if :: !NO_RECORDS && lp && (peerup[me_] || NO_VERIFY) -> raise(v, me_, tl[me_]) :: else -> skip fi
    :: v == NW && LINKUP(me_, NW) && peerup[NW] ->
      catch_up(NW);
      if :: !NO_RECORDS && lp && (peerup[me_] || NO_VERIFY) -> raise(NW, me_, tl[me_]) :: else -> skip fi;
      if
      :: wc_left == 0 ->
        /* The fan-out: the witness asks every data node. */
        wm = 0; x = 0;
        do
        :: x < ND ->
          if
          :: LINKUP(x, NW) && peerup[x] ->
            own_postgres_raises(x);
            if
            :: pg[x] == PG_PRIMARY && !hung[x] -> wm = wm | (1 << x);
              if :: !NO_RECORDS -> raise(NW, x, tl[x]) :: else -> skip fi
            :: else -> skip
            fi
          :: else -> skip
          fi;
          x++
        :: else -> break
        od;
        wc_masters = wm;
        wc_left = CACHE + 1   /* served for CACHE seconds: this tick and the next */
      :: else -> skip
      fi
    :: else -> skip
    fi;
    /* The record it has read, for the spanning run. */
    if
    :: me_ == splitme && v != me_ -> snt[v] = (cu[v] -> NOREC : rtl[v]); sns[v] = (cu[v] -> 0 : rnodes[v])
    :: else -> skip
    fi;
    v++
  :: else -> break
  od;
  v = 0
}

/* What node i's run or round learns from its answers and its own
 * record: the candidates (ctl, cset), the voters holding its claim
 * (holders, heldmask), the opinions, the quiet nodes. */
inline tally(me_) {
  delta = dl[me_];
  lp = (pg[me_] == PG_PRIMARY);
  holders = 0; opinions = 1 + DOUBLE_SELF; against = 0; ctl = 0; cset = 0; reached = 1 + DOUBLE_SELF;
  heldmask = 0; quietmask = 0; allquiet = 1;
  if :: lp -> cand(me_, tl[me_]) :: else -> skip fi;
  v = 0;
  do
  :: v < NV ->
    if
    :: v != me_ && v < ND && LINKUP(me_, v) && peerup[v] ->
      /* A data node's peer. */
      opinions++;
      vprim = (pg[v] == PG_PRIMARY && !hung[v]);
      if :: vprim -> cand(v, tl[v]); raise(me_, v, tl[v]) :: else -> skip fi;
      returned(me_, v);
      take_record(me_, v);
      /* Its opinion: a primary names itself, a standby its upstream. */
      if
      :: vprim -> jm = (1 << v)
      :: pg[v] == PG_STANDBY && !hung[v] -> jm = (1 << ups[v])
      :: else -> jm = 0
      fi;
      if :: jm != 0 && (jm & (1 << me_)) == 0 -> against++ :: else -> skip fi;
      /* A quiet node: stopped (refused), or in recovery; a timeout is
       * neither. */
      if
      :: pg[v] == PG_DOWN || (pg[v] == PG_STANDBY && !hung[v]) || (SHORTCUT_ON_TIMEOUT && hung[v]) ->
        quietmask = quietmask | (1 << v)
      :: else -> allquiet = 0
      fi
    :: v == NW && LINKUP(me_, NW) && peerup[NW] ->
      opinions++;
      if :: wc_masters != 0 && (wc_masters & (1 << me_)) == 0 -> against++ :: else -> skip fi;
      /* Its record: never from a cache. */
      returned(me_, NW);
      take_record(me_, NW)
    :: v != me_ && v < ND -> allquiet = 0   /* unreachable */
    :: else -> skip
    fi;
    v++
  :: else -> break
  od;
  /* Raise our own record from our own Postgres, then read it back (after
   * catching up, if it was re-initialised). */
  if
  :: !NO_RECORDS ->
    if :: lp -> raise(me_, me_, tl[me_]) :: else -> skip fi;
    catch_up(me_);
    if
    :: cu[me_] -> reached = reached - 1 - DOUBLE_SELF
    :: else ->
      st = rtl[me_]; ss = rnodes[me_];
      cand_set(st, ss);
      if
      :: lp && HOLDS(st, ss, me_) -> confirm(me_, me_);
        if :: DOUBLE_SELF -> holders++ :: else -> skip fi
      :: else -> skip
      fi
    fi
  :: else -> skip
  fi;
}

/* Rule 3: node i is the legitimate primary, a majority of all configured
 * voters returned records holding its claim, and no majority of opinions
 * names another master. */
#define LEGIT(me_) (cset == (1 << (me_)) && ctl == tl[me_] && \
  ((NO_RECORDS || REACHED_NOT_HOLDERS) -> reached : holders) * 2 > (REACHABLE_MAJORITY -> reached : NVC) && \
  against * 2 <= opinions)
/* A higher claim, or another node's on the same timeline. */
#define OUTCLAIMED(me_) (cset != (1 << (me_)) || ctl != tl[me_])

/* The run or round of node i killed after its voters confirmed it, before
 * it wrote (F_KILL): its process stays stopped. */
#define KILLED(me_, ren_) ((me_) == killme && killren == (ren_))
inline die() {
  faults++; healthy = 0; rarmed = 0; farmed = 0
}

inline answers(me_) {
  tally(me_);
  if
  :: KILLED(me_, 0) -> die(); recon[me_] = 0
  :: else -> decide_write(me_)
  fi;
  rnext[me_] = gap[me_]
}

/* Decide (rule 3), and write the verdict. */
inline decide_write(me_) {
  restart = ((vkind[me_] == V_PROD || RESTART_ANY_VERDICT) && vtl[me_] == tl[me_] && vepoch[me_] != epoch[me_]);
  if
  :: lp ->
    if
    :: LEGIT(me_) || (RESTART_NO_MAJORITY && restart) ->
      if
      :: vhaswait[me_] && vtl[me_] == tl[me_] && vepoch[me_] == epoch[me_] -> skip  /* carried */
      :: else ->
        vhaswait[me_] = 1;
        if
        :: RESTART_RULE && restart -> vwait[me_] = 0
        :: !(RESTART_RULE && restart) && AGES -> age_wait(me_); vwait[me_] = w
        :: !(RESTART_RULE && restart) && !AGES ->
          if
          :: allquiet && reached == NVC && !NO_SHORTCUT -> vwait[me_] = SHORT_WAIT
          :: else -> vwait[me_] = WAIT
          fi
        fi;
        if :: promoted && me_ == pn -> qset = 1; since_q = 0 :: else -> skip fi
      fi;
      if :: vwait[me_] == 0 -> vkind[me_] = V_PROD :: else -> vkind[me_] = V_FENCED fi
    :: else -> vkind[me_] = V_FENCED; vhaswait[me_] = 0
    fi
  :: else -> vkind[me_] = V_STANDBY; vhaswait[me_] = 0
  fi;
  vtl[me_] = tl[me_]; vepoch[me_] = epoch[me_]; vlease[me_] = LN(me_) - delta + T0_AFTER * DREN
}

/* One round of node i's renewal: only for a confirming verdict of this
 * postmaster that has not run out, the same asks and rules as a run, and
 * then it only extends that verdict (from the round's start), fences at
 * once on a higher or tied claim (and starts a full run), or, with no
 * majority, writes nothing. A verdict run out starts a full run instead. */
inline renew(me_) {
  if
  :: !(lost && me_ == NA) && rnw[me_] && pg[me_] == PG_PRIMARY && !hung[me_] &&
     (RENEW_CREATES || ((vkind[me_] == V_PROD || (RENEW_OVER_FENCE && vkind[me_] == V_FENCED))
                        && vtl[me_] == tl[me_] && vepoch[me_] == epoch[me_])) ->
    if
    /* Run out at the round's start (delta ticks before its write)? */
    :: vlease[me_] + dl[me_] == 0 && !RENEW_CREATES -> rnext[me_] = 0
    :: else ->
      asks(me_);
      tally(me_);
      if
      :: KILLED(me_, 1) -> die(); rnw[me_] = 0
      :: !KILLED(me_, 1) && LEGIT(me_) ->
        vkind[me_] = V_PROD; vtl[me_] = tl[me_]; vepoch[me_] = epoch[me_];
        vlease[me_] = LN(me_) - delta + T0_AFTER * DREN
      :: !KILLED(me_, 1) && !LEGIT(me_) && OUTCLAIMED(me_) ->
        vkind[me_] = V_FENCED; vhaswait[me_] = 0; rnext[me_] = 0
      :: else -> skip
      fi
    fi
  :: else -> skip
  fi
}

/* The renewals of the tick, in the runs' order. */
inline renewals() {
  i = 0;
  do
  :: RENEW && i < ND -> me = (i + order) % ND; renew(me); i++
  :: else -> break
  od;
  i = 0
}

inline reconcile_start(me_) {
  if :: RUNS(me_) -> asks(me_) :: else -> skip fi
}

inline reconcile_finish(me_) {
  if
  :: !recon[me_] -> skip   /* stopped: it runs when it goes on */
  :: recon[me_] && (pg[me_] == PG_DOWN || hung[me_]) ->
    /* Postgres cannot be asked: nothing changes, and the timer goes on. */
    rnext[me_] = gap[me_]
  :: else -> answers(me_)
  fi
}

inline reconcile(me_) {
  reconcile_start(me_);
  reconcile_finish(me_)
}

/* HAProxy completes a check of server s. */
inline deliver(s) {
  hpend[s] = 0;
  if
  :: hok[s] ->
    if
    :: up[s] -> hcount[s] = 0
    :: else -> hcount[s]++;
      if :: hcount[s] >= RISE -> up[s] = 1; hcount[s] = 0 :: else -> skip fi
    fi
  :: else ->
    if
    :: !up[s] -> hcount[s] = 0
    :: else -> hcount[s]++;
      if :: hcount[s] >= FALL -> going_down[s] = 1; hcount[s] = 0 :: else -> skip fi
    fi
  fi;
  if :: hcount[s] > 0 -> hnext[s] = FASTINTER :: else -> hnext[s] = INTER fi
}

/* HAProxy's check of server s this tick: start one when due (it reads the
 * word now), complete one when its time has come. A success arrives
 * within the transit bound; a failure may take up to T_FAIL. */
inline haproxy(s) {
  if
  :: !hpend[s] && hnext[s] == 0 ->
    hpend[s] = 1;
    hok[s] = PRODUCING(s);
    if
    :: hd[s] == 0 -> hdelay[s] = 0
    :: hok[s] && hd[s] != 0 -> hdelay[s] = TRANSIT
    :: else -> hdelay[s] = T_FAIL
    fi
  :: else -> skip
  fi;
  if :: hpend[s] && hdelay[s] == 0 -> deliver(s) :: else -> skip fi
}

inline tick_down(td_) {
  if :: td_ > 0 -> td_-- :: else -> skip fi
}

/* How far voter n's clock advances this tick: 1, or 0 (slow) or 2 (fast)
 * once every DRIFT_PERIOD ticks. */
#define STEP(n) ((DRIFT && cph == 0) -> (ck[n] == 1 -> 0 : (ck[n] == 2 -> 2 : 1)) : 1)

inline clock_down(cd_, cn3_) {
  if
  :: STEP(cn3_) == 0 -> skip
  :: STEP(cn3_) == 1 -> tick_down(cd_)
  :: else -> tick_down(cd_); tick_down(cd_)
  fi
}

/* A mutation's promotion by an HA tool: node n becomes primary on a new
 * timeline; the others keep streaming from where they were. */
inline promote(pn_) {
  /* P8: promote-check let it through only once A had left prod. */
  if :: PROMOTE_CHECK -> assert(P8 && !up[NA] && !SANITY_PROMOTED) :: else -> skip fi;
  pg[pn_] = PG_PRIMARY; tl[pn_] = 2; promoted = 1; pn = pn_; since_promo = 0;
  rarmed = 0;   /* a restarted primary may lose its place to the promotion */
  planned = (pg[NA] == PG_DOWN);
  /* P6: no voter has confirmed A for L' + H', and the promoted node and
   * every voter but A can reach each other and vote, so nothing stands
   * between it and a majority. */
  farmed = recon[pn_] && !hung[pn_];
  v = 0;
  do
  :: v < NV ->
    if :: v != NA && crem[v] != 0 -> farmed = 0 :: else -> skip fi;
    if :: v != NA && !peerup[v] -> farmed = 0 :: else -> skip fi;
    if :: v != NA && v != pn_ && !LINKUP(v, pn_) -> farmed = 0 :: else -> skip fi;
    if :: v != NA && v < ND && v != pn_ && pg[v] != PG_STANDBY -> farmed = 0 :: else -> skip fi;
    if :: v != NA && cu[v] -> farmed = 0 :: else -> skip fi;   /* it cannot vote yet */
    v++
  :: else -> break
  od
}

active proctype world() {
  byte i, k, v, x, me, delta, reached, holders, opinions, against, ctl, cset, jm, wm;
  byte st, ss, heldmask, quietmask, w, wx, r, cnt, nth, val, u;
  bit lp, vprim, allquiet, restart;
  /* The tick's choices, made first: how late each run's t0 was (dl), when
   * its timer fires next (gap), how long each HAProxy check takes (hd),
   * and in which order the due reconcilers run. */
  byte dl[ND], gap[ND], hd[ND], order;

  atomic {
    links = (1 << NLINKS) - 1;
    i = 0;
    do
    :: i < ND ->
      pg[i] = PG_STANDBY; tl[i] = 1; recon[i] = 1; vkind[i] = V_STANDBY; vtl[i] = 1;
      up[i] = START_UP; ups[i] = NA; rnw[i] = RENEW;
      /* With SHRINK, each node runs the old config or the new one. */
      if :: SHRINK -> if :: lbig[i] = 0 :: lbig[i] = 1 fi :: else -> skip fi;
      vlease[i] = LN(i);
      if :: rnext[i] = 0 :: rnext[i] = 1 fi;
      if :: hnext[i] = 0 :: hnext[i] = 1 :: hnext[i] = INTER fi;
      i++
    :: else -> break
    od;
    pg[NA] = PG_PRIMARY; vkind[NA] = V_PROD; vhaswait[NA] = 1;
    i = 0;
    do
    :: i < NV -> peerup[i] = 1; rtl[i] = 1; rnodes[i] = 1; i++
    :: else -> break
    od;
    /* Every voter has just confirmed A; the standbys never claimed. */
    i = 0;
    do
    :: i < NV -> crem[i] = (i == NA -> 0 : CONF_OF(NA)); i++
    :: else -> break
    od;
    /* Each clock true, slow or fast, for the whole run. */
    if
    :: DRIFT ->
      i = 0;
      do
      :: i < NV -> if :: ck[i] = 0 :: ck[i] = 1 :: ck[i] = 2 fi; i++
      :: else -> break
      od
    :: else -> skip
    fi;
    i = 0
  };

  do
  :: atomic {
    /* promote-check, for each standby: the voters other than A that it
     * reaches (itself through its own peer) say what is left of A's lease
     * and H' (or, mutated, of the lease alone); one not reached counts all
     * of it. Yes when the (m - 1)-th largest is 0, the successor's own
     * quorum rule: then one of A's last majority has seen it all run out. */
    if
    :: PROMOTE_CHECK && !promoted ->
      d_step {
      pcok = 0; x = 1;
      do
      :: x < ND ->
        cnt = 0; v = 0;
        do
        :: v < NV ->
          if
          :: v != NA ->
            if
            :: peerup[v] && (v == x || LINKUP(x, v)) ->
              val = (PC_NO_H -> (crem[v] > HTERM_P -> crem[v] - HTERM_P : 0)
                             : (crem[v] > 0 -> crem[v] : RISE_CREDIT - cz[v]))
            :: else -> val = CONF_TOP
            fi;
            if :: val > 0 -> cnt++ :: else -> skip fi
          :: else -> skip
          fi;
          v++
        :: else -> break
        od;
        if :: cnt < MAJ - 1 + PC_ONE_SHORT -> pcok = pcok | (1 << x) :: else -> skip fi;
        x++
      :: else -> break
      od;
      cnt = 0; v = 0; x = 0; val = 0
      }
    :: else -> skip
    fi;
    /* (1) At most one event. */
    if
    :: skip
    :: !promoted && (PROMOTE_MASK & 2) && pg[NB] == PG_STANDBY && !hung[NB] && (!PROMOTE_CHECK || (pcok & 2)) -> promote(NB)
#if ND > 2
    :: !promoted && (PROMOTE_MASK & 4) && pg[2] == PG_STANDBY && !hung[2] && (!PROMOTE_CHECK || (pcok & 4)) -> promote(2)
#endif
    :: F_RENEW && faults < MAXF ->
      /* A renewal process stops (or hangs), or goes on. */
      faults++; healthy = 0; rarmed = 0; farmed = 0;
      if
      :: (NODE_MASK >> 0) & 1 -> k = 0
      :: (NODE_MASK >> 1) & 1 -> k = 1
      :: ND > 2 && ((NODE_MASK >> 2) & 1) -> k = 2
      fi;
      rnw[k] = 1 - rnw[k]
    :: SHRINK && lbig[NA] -> lbig[NA] = 0   /* the rollout reaches A */
    :: SHRINK && lbig[NB] -> lbig[NB] = 0
    :: F_LINK && faults < MAXF ->
      faults++; healthy = 0; rarmed = 0; farmed = 0;
      if
      :: (LINK_MASK >> 0) & 1 -> k = 0
      :: (LINK_MASK >> 1) & 1 -> k = 1
      :: (LINK_MASK >> 2) & 1 -> k = 2
      :: NLINKS > 3 && ((LINK_MASK >> 3) & 1) -> k = 3
      :: NLINKS > 4 && ((LINK_MASK >> 4) & 1) -> k = 4
      :: NLINKS > 5 && ((LINK_MASK >> 5) & 1) -> k = 5
      fi;
      links = links ^ (1 << k)
    :: F_PEER && faults < MAXF ->
      /* A peer crashes or hangs, comes back, or restarts at once. A
       * restart empties its cache and its confirmations (set to now); its
       * record is on disk. */
      faults++; farmed = 0;
      if
      :: (PEER_MASK >> 0) & 1 -> k = 0
      :: (PEER_MASK >> 1) & 1 -> k = 1
      :: (PEER_MASK >> 2) & 1 -> k = 2
      :: NV > 3 && ((PEER_MASK >> 3) & 1) -> k = 3
      fi;
      if
      :: peerup[k] = 1 - peerup[k];
        healthy = 0; rarmed = 0; farmed = 0;
        if
        :: peerup[k] -> crem[k] = (RESTART_FORGETS -> 0 : CONF_TOP); vup[k] = CONF_TOP; cage[k] = 0; cz[k] = 0
        :: else -> skip
        fi
      :: peerup[k] ->
        /* A restart at once harms nobody's progress (P3, P5 go on). */
        if :: k == NW -> wc_left = 0 :: else -> skip fi;
        crem[k] = (RESTART_FORGETS -> 0 : CONF_TOP); vup[k] = CONF_TOP; cage[k] = 0; cz[k] = 0;
        if :: MEMORY_RECORDS -> rtl[k] = 0; rnodes[k] = 0 :: else -> skip fi
      fi
    :: F_PGHANG && faults < MAXF ->
      faults++; healthy = 0; rarmed = 0; farmed = 0;
      if
      :: (NODE_MASK >> 0) & 1 -> k = 0
      :: (NODE_MASK >> 1) & 1 -> k = 1
      :: ND > 2 && ((NODE_MASK >> 2) & 1) -> k = 2
      fi;
      if :: pg[k] != PG_DOWN -> hung[k] = 1 - hung[k] :: else -> skip fi
    :: F_STOP && faults < MAXF && pg[NA] != PG_DOWN && !hung[NA] ->
      faults++; rarmed = 0; farmed = 0; pg[NA] = PG_DOWN
    :: F_STOP && faults < MAXF && pg[NA] == PG_DOWN ->
      faults++; rarmed = 0; farmed = 0; epoch[NA] = 1 - epoch[NA];
      if
      :: pg[NA] = PG_PRIMARY; planned = planned && qset   /* the zombie restarts */
      :: promoted -> pg[NA] = PG_STANDBY; tl[NA] = tl[pn]; ups[NA] = pn   /* rewound, follows */
      fi
    :: F_RESTART && faults < MAXF && ANY_PRIMARY ->
      /* A primary's Postgres restarts at once (pg_ctl restart): a new
       * postmaster on the same timeline. P5 watches a restart of the
       * node that answers `production` on a healthy cluster. */
      faults++; farmed = 0;
      if
      :: pg[NA] == PG_PRIMARY && !hung[NA] -> k = NA
      :: pg[NB] == PG_PRIMARY && !hung[NB] -> k = NB
#if ND > 2
      :: pg[2] == PG_PRIMARY && !hung[2] -> k = 2
#endif
      fi;
      rarmed = PRODUCING(k) && healthy && (promoted -> k == pn : k == NA);
      rnode = k; since_restart = 0;
      if :: k != NA -> healthy = 0 :: else -> skip fi;
      epoch[k] = 1 - epoch[k]
    :: F_RECON && faults < MAXF ->
      /* A reconciler stops (its timer, or a run stuck), or goes on. */
      faults++; healthy = 0; rarmed = 0; farmed = 0;
      if
      :: (NODE_MASK >> 0) & 1 -> k = 0
      :: (NODE_MASK >> 1) & 1 -> k = 1
      :: ND > 2 && ((NODE_MASK >> 2) & 1) -> k = 2
      fi;
      recon[k] = 1 - recon[k]
    :: F_STRANGER && faults < MAXF ->
      /* A stranger's claim (node k, timeline x) at voter v: a voter takes
       * it only once it has asked k's peer and seen the same claim. */
      faults++; rarmed = 0;
      if :: v = NA :: v = NB :: v = NW fi;
      if :: k = NA :: k = NB fi;
      if :: x = 1 :: x = 2 :: x = 3 fi;
      if
      :: NO_VERIFY || (peerup[k] && pg[k] == PG_PRIMARY && !hung[k] && tl[k] == x) ->
        raise(v, k, x)
      :: else -> skip
      fi
    :: F_WIPE && faults < MAXF ->
      /* Voter k's disk is lost: replaced, its record re-initialised
       * (`claims init`, empty) and its peer restarted (its confirmations
       * set to now, the witness's cache emptied). It catches up before it
       * votes again. */
      faults++; farmed = 0;
      if
      :: (WIPE_MASK >> 0) & 1 -> k = 0
      :: (WIPE_MASK >> 1) & 1 -> k = 1
      :: (WIPE_MASK >> 2) & 1 -> k = 2
      :: NV > 3 && ((WIPE_MASK >> 3) & 1) -> k = 3
      fi;
      /* With another voter still catching up, neither may ever catch up
       * (with three voters, two of the three records are lost): progress
       * is an operator's to restore. */
      x = 0;
      do
      :: x < NV -> if :: x != k && cu[x] -> healthy = 0; rarmed = 0 :: else -> skip fi; x++
      :: else -> break
      od;
      rtl[k] = 0; rnodes[k] = 0; cu[k] = (INIT_VOTES_AT_ONCE -> 0 : 1);
      if :: k != NA -> crem[k] = CONF_TOP :: else -> skip fi;
      vup[k] = CONF_TOP; cage[k] = 0; cz[k] = 0;
      if :: k == NW -> wc_left = 0 :: else -> skip fi
    fi;

    /* t0 is taken DEADLINE before the end of gathering only in LATE_T0
     * configurations: a later t0 means a longer lease, which can only add
     * `production` answers, so 0 is the worst case for P1 and P2, and
     * DEADLINE the worst for P3 and P4. */
    i = 0;
    do
    :: i < ND ->
      dl[i] = LATE_T0 * DEADLINE; gap[i] = WATCHDOG;
      if
      :: JITTER && rnext[i] == 0 -> if :: skip :: gap[i] = WATCHDOG + 1 fi
      :: else -> skip
      fi;
      /* A check completes at once or late: a success within TRANSIT, a
       * failure (a timeout) at T_FAIL. */
      if :: !hpend[i] && hnext[i] == 0 -> if :: hd[i] = 0 :: hd[i] = 1 fi :: else -> skip fi;
      i++
    :: else -> break
    od;
    /* A run or a renewal round killed before its write (F_KILL); and
     * whether the renewals run before the full runs this tick. */
    if
    :: F_KILL && faults < MAXF ->
      if
      :: skip
      :: (NODE_MASK & 1) && rnext[NA] == 0 -> killme = NA; killren = 0
      :: (NODE_MASK & 2) && rnext[NB] == 0 -> killme = NB; killren = 0
      :: (NODE_MASK & 1) && RENEW -> killme = NA; killren = 1
      :: (NODE_MASK & 2) && RENEW -> killme = NB; killren = 1
      fi
    :: else -> skip
    fi;
    if
    :: RENEW -> if :: rfirst = 0 :: rfirst = 1 fi
    :: else -> skip
    fi;
    if
    :: BLIPS && !lostprev -> if :: lost = 0 :: lost = 1 fi
    :: else -> skip
    fi;
    /* Which due reconciler runs first, when two or more are due (with
     * three, any of the rotations). */
    k = 0; x = 0;
    do
    :: x < ND -> if :: rnext[x] == 0 -> k++ :: else -> skip fi; x++
    :: else -> break
    od;
    if
    :: k > 1 -> if :: order = 0 :: order = 1 :: ND > 2 -> order = 2 fi;
      /* Or the first run's voters read their records before the other
       * runs, and answer (confirm) after them. That differs from running
       * it last only when a run may raise a record this tick: a primary's
       * claim missing from its own record or from a voter that it and its
       * peer reach, or a voter catching up. (If not, every record stays as
       * it is, and the first run's answers are those it would give last.) */
      d_step {
      wm = 0; x = 0;
      do
      :: x < ND ->
        if
        :: pg[x] == PG_PRIMARY && !hung[x] ->
          v = 0;
          do
          :: v < NV ->
            if
            :: ((tl[x] > rtl[v] || (tl[x] == rtl[v] && ((rnodes[v] >> x) & 1) == 0))
                && (v == x || (peerup[x] && peerup[v] && LINKUP(x, v)))) -> wm = 1
            :: else -> skip
            fi;
            v++
          :: else -> break
          od
        :: else -> skip
        fi;
        x++
      :: else -> break
      od;
      v = 0;
      do
      :: v < NV -> if :: cu[v] -> wm = 1 :: else -> skip fi; v++
      :: else -> break
      od;
      x = order;
      do
      :: rnext[x] != 0 -> x = (x + 1) % ND
      :: else -> break
      od
      };
      if
      :: SPAN && wm -> if :: skip :: splitme = x fi
      :: else -> skip
      fi;
      wm = 0; x = 0; v = 0
    :: else -> skip
    fi;

    /* (2) The renewals (before or after the runs), and the reconcilers
     * that are due, in the order chosen. */
    if :: rfirst -> d_step { renewals() } :: else -> skip fi;
    d_step {
    i = 0;
    do
    :: i < ND ->
      me = (i + order) % ND;
      if
      :: rnext[me] == 0 && me == splitme -> reconcile_start(me)
      :: rnext[me] == 0 && me != splitme -> reconcile(me)
      :: else -> skip
      fi;
      i++
    :: else -> break
    od;
    if :: splitme < ND -> reconcile_finish(splitme) :: else -> skip fi
    };
    if :: !rfirst -> d_step { renewals() } :: else -> skip fi;
    d_step {

    /* (3) The words. */
    k = 0; x = 0;
    do
    :: x < ND -> if :: PRODUCING(x) -> k++ :: else -> skip fi; x++
    :: else -> break
    od;
    assert(P1 && k <= 1);
    if
    :: CHECK_P9 && faults == 0 && !promoted -> assert(P9 && PRODUCING(NA))
    :: else -> skip
    fi;
    if
    :: CHECK_P7 ->
      x = 0;
      do
      :: x < ND -> if :: PRODUCING(x) && tl[x] > hiprod -> hiprod = tl[x] :: else -> skip fi; x++
      :: else -> break
      od;
      x = 0;
      do
      :: x < ND -> if :: PRODUCING(x) -> assert(P7 && tl[x] >= hiprod) :: else -> skip fi; x++
      :: else -> break
      od
    :: else -> skip
    fi;
    if
    :: CHECK_LIVE && promoted && healthy && since_promo >= P3_BOUND -> assert(P3 && PRODUCING(pn))
    :: else -> skip
    fi;
    if
    :: CHECK_LIVE && planned && healthy && qset && since_q >= P4_BOUND -> assert(P4 && PRODUCING(pn))
    :: else -> skip
    fi;
    if
    :: CHECK_LIVE && rarmed && since_restart >= P5_BOUND -> assert(P5 && PRODUCING(rnode))
    :: else -> skip
    fi;
    if
    :: CHECK_LIVE && farmed && since_promo >= P6_BOUND -> assert(P6 && PRODUCING(pn))
    :: else -> skip
    fi;

    /* One line a tick when a trail is replayed (spin -t); pan prints nothing. */
    printf("MSC: A[pg%d tl%d hung%d peer%d rec%d ren%d old%d v%d lease%d wait%d prod%d] B[pg%d tl%d hung%d peer%d rec%d ren%d old%d v%d lease%d wait%d prod%d] W[peer%d] links[%d] records[A %d/%d B %d/%d W %d/%d] init[%d%d%d] crem[BA%d WA%d] up[%d%d]\n",
      pg[NA], tl[NA], hung[NA], peerup[NA], recon[NA], rnw[NA], lbig[NA], vkind[NA], vlease[NA], vwait[NA], PRODUCING(NA),
      pg[NB], tl[NB], hung[NB], peerup[NB], recon[NB], rnw[NB], lbig[NB], vkind[NB], vlease[NB], vwait[NB], PRODUCING(NB),
      peerup[NW], links,
      rtl[NA], rnodes[NA], rtl[NB], rnodes[NB], rtl[NW], rnodes[NW],
      cu[NA], cu[NB], cu[NW], crem[NB], crem[NW], up[NA], up[NB]);
    /* (4) HAProxy. */
    x = 0;
    do
    :: x < ND -> haproxy(x); x++
    :: else -> break
    od;

    /* (5) */
    k = 0; x = 0;
    do
    :: x < ND -> if :: up[x] -> k++ :: else -> skip fi; x++
    :: else -> break
    od;
    if :: CHECK_P2 -> assert(P2 && k <= 1) :: else -> skip fi;

    /* (6) Time: HAProxy's in real time, the rest on each node's clock. */
    x = 0;
    do
    :: x < ND ->
      if :: going_down[x] -> up[x] = 0; going_down[x] = 0 :: else -> skip fi;
      clock_down(vlease[x], x); clock_down(vwait[x], x); clock_down(rnext[x], x);
      if :: hpend[x] -> tick_down(hdelay[x]) :: else -> tick_down(hnext[x]) fi;
      x++
    :: else -> break
    od;
    v = 0;
    do
    :: v < NV ->
      if :: PROMOTE_CHECK && !promoted && v != NA && crem[v] == 0 && cz[v] < RISE_CREDIT -> cz[v]++ :: else -> skip fi;
      if :: v != NA -> clock_down(crem[v], v) :: else -> skip fi;
      if :: LOCAL_L && cage[v] < CONF_TOP -> cage[v]++ :: else -> skip fi;
      clock_down(vup[v], v);
      v++
    :: else -> break
    od;
    clock_down(wc_left, NW);
    if :: DRIFT -> cph = (cph + 1) % DRIFT_PERIOD :: else -> skip fi;
    /* The liveness clocks (not kept when P3 to P6 are off: fewer states). */
    if :: CHECK_LIVE && promoted && since_promo < P3_BOUND + P6_BOUND -> since_promo++ :: else -> skip fi;
    if :: CHECK_LIVE && qset && since_q < P4_BOUND -> since_q++ :: else -> skip fi;
    if :: CHECK_LIVE && rarmed && since_restart < P5_BOUND -> since_restart++ :: else -> skip fi;
    if :: !CHECK_LIVE -> healthy = 0; planned = 0; qset = 0; rarmed = 0; rnode = 0; farmed = 0 :: else -> skip fi;
    /* Scratch values do not outlive the tick (fewer states). */
    i = 0; k = 0; v = 0; x = 0; me = 0; delta = 0; reached = 0; holders = 0; opinions = 0;
    against = 0; ctl = 0; cset = 0; jm = 0; wm = 0; st = 0; ss = 0; heldmask = 0;
    quietmask = 0; w = 0; wx = 0; r = 0; cnt = 0; nth = 0; val = 0;
    lp = 0; vprim = 0; allquiet = 0; restart = 0; order = 0; u = 0; splitme = ND;
    killme = ND; killren = 0; rfirst = 0; pcok = 0; lostprev = lost; lost = 0;
    x = 0;
    do
    :: x < ND -> dl[x] = 0; gap[x] = 0; hd[x] = 0; x++
    :: else -> break
    od;
    x = 0;
    do
    :: x < NV -> snt[x] = 0; sns[x] = 0; x++
    :: else -> break
    od;
    x = 0
    }
  }
  od
}
