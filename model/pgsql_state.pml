/* pgsql-state's fencing and lease protocol, in Promela, for spin.
 *
 * Two data nodes (A, B) and a witness (W), in discrete time (a tick is one
 * second). A starts as the primary on timeline 1 with a confirming
 * verdict; B is its standby. At any tick, an external tool may promote B
 * (timeline 2) while A runs on: the zombie. Faults, each enabled by a
 * configuration (check.sh) and bounded in number by MAXF, come one per
 * tick: any partition of the three links (non-transitive ones included), a
 * peer crashed or hung and back, a postmaster hung and resumed, A's
 * Postgres stopped and started again (as the zombie or as a standby), a
 * reconciler that stops and goes on, and a stranger sending claims.
 *
 * Each tick: (1) at most one event; (2) the reconcilers whose timer is due
 * run, in either order; (3) each responder's word is read, the instant
 * HAProxy or a client could ask; (4) HAProxy starts and completes checks;
 * (5) the properties are asserted; (6) time advances.
 *
 * Properties (assertions, checked at every tick):
 *   P1  never two responders answer `production` in the same tick;
 *   P2  never two servers UP in HAProxy's prod in the same tick, from its
 *       start (a server going DOWN in a tick still counts as UP in it);
 *   P3  after a promotion, with no fault but A stopping or restarting, B
 *       answers `production` within P3_BOUND ticks;
 *   P4  in a planned switchover (A stopped before B's promotion, and not
 *       back as a primary), B answers `production` before q + W: the
 *       lease term is skipped and only HAProxy's term H is waited.
 *
 * The rules are those of src/decide.rs; each mutation macro weakens one
 * (check.sh runs them and expects a counterexample from each). */

#include "params.pml"

#define NA 0
#define NB 1
#define NW 2

#define PG_DOWN    0
#define PG_PRIMARY 1
#define PG_STANDBY 2

#define V_NONE     0
#define V_PROD     1
#define V_FENCED   2
#define V_STANDBY  3

#define L_AB 0
#define L_AW 1
#define L_BW 2
#define LINK_TO_W(n) ((n) == NA -> L_AW : L_BW)

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
#ifndef F_RECON
#define F_RECON 0
#endif
#ifndef F_STRANGER
#define F_STRANGER 0
#endif
/* Which links (bit 0 A-B, 1 A-W, 2 B-W), peers (bit n) and reconcilers
 * the faults may touch: all unless a configuration narrows them. */
#ifndef LINK_MASK
#define LINK_MASK 7
#endif
#ifndef PEER_MASK
#define PEER_MASK 7
#endif
#ifndef NODE_MASK
#define NODE_MASK 3
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
#ifndef NO_SHORTCUT         /* the planned-switchover shortcut not taken */
#define NO_SHORTCUT 0
#endif
#ifndef START_UP            /* HAProxy 2.6 without the server-state file */
#define START_UP 0
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

/* P3 and P4 off, to show that a mutation breaks P1 or P2 too. */
#ifndef CHECK_LIVE
#define CHECK_LIVE 1
#endif

#ifndef P3_BOUND
#define P3_BOUND (WAIT + 3 * (WATCHDOG + DEADLINE) + CACHE + 1)
#endif
/* q + H, plus one run's lateness: before q + W unless H + R + D >= W. */
#define P4_BOUND (SHORT_WAIT + WATCHDOG + DEADLINE)

/* Postgres, per data node. */
byte pg[2];
byte tl[2];
bit epoch[2];        /* which postmaster: flips at each start */
bit hung[2];         /* postmaster hung (SIGSTOP) */

/* Processes and links. */
bit peerup[3];       /* the peer answers (not crashed, not hung) */
bit recon[2];        /* the reconciler's timer still runs */
bit link[3];

/* Claim records: the highest timeline seen claimed, and by whom (bit n). */
byte rtl[3];
byte rnodes[3];

/* The witness's answer cache: the masters it saw, and for how long. */
byte wc_left;
byte wc_masters;

/* Verdict files. */
byte vkind[2];
byte vtl[2];
bit vepoch[2];
byte vlease[2];      /* ticks until expires */
byte vwait[2];       /* ticks until wait_until */
bit vhaswait[2];     /* wait_until is set (carried to the next run) */
byte rnext[2];       /* ticks until the reconciler runs */

/* HAProxy's prod pool. */
bit up[2];
bit going_down[2];
byte hcount[2];      /* consecutive results towards rise (DOWN) or fall (UP) */
byte hnext[2];       /* ticks until the next check starts */
bit hpend[2];        /* a check is in flight */
bit hok[2];
byte hdelay[2];      /* ticks until it completes */

/* Constant 1: they name the property in an assertion's report. */
bit P1 = 1;
bit P2 = 1;
bit P3 = 1;
bit P4 = 1;

/* Bookkeeping for the properties. */
byte faults;
bit promoted;
bit healthy = 1;
bit planned;
bit qset;            /* B's wait has started (q) */
byte since_promo;
byte since_q;

#define PRODUCING(n) (pg[n] == PG_PRIMARY && !hung[n] && vkind[n] == V_PROD \
                      && vtl[n] == tl[n] && vepoch[n] == epoch[n] && vlease[n] > 0)

/* Raise voter v's record with the claim (node n, timeline t). */
inline raise(v, n, t) {
  if
  :: (t) > rtl[v] -> rtl[v] = (t); rnodes[v] = (1 << (n))
  :: (t) > 0 && (t) == rtl[v] -> rnodes[v] = rnodes[v] | (1 << (n))
  :: else -> skip
  fi
}

inline raise_set(v, t, set) {
  if :: ((set) & 1) -> raise(v, NA, t) :: else -> skip fi;
  if :: ((set) & 2) -> raise(v, NB, t) :: else -> skip fi
}

/* Rule 1 and 2: keep the highest timeline and every node claiming it. */
inline cand(n, t) {
  if
  :: (t) > ctl -> ctl = (t); cset = (1 << (n))
  :: (t) > 0 && (t) == ctl -> cset = cset | (1 << (n))
  :: else -> skip
  fi
}

inline cand_set(t, set) {
  if :: ((set) & 1) -> cand(NA, t) :: else -> skip fi;
  if :: ((set) & 2) -> cand(NB, t) :: else -> skip fi
}

/* Rule 3(b): a voter's record, as returned, holds node n's claim on
 * n's own timeline. */
#define HOLDS(t, set, n) (!NO_RECORDS && (t) == tl[n] && ((set) & (1 << (n))))

/* A data node's peer answers: it first raises its record from its own
 * Postgres. */
inline own_postgres_raises(k) {
  if
  :: !NO_RECORDS && pg[k] == PG_PRIMARY && !hung[k] -> raise(k, k, tl[k])
  :: else -> skip
  fi
}

/* One run of node i's reconciler: gather, raise its record, decide, write
 * the verdict. Atomic at the end of gathering; t0 was `delta` ticks
 * earlier, so the lease runs from there. */
inline reconcile(i, j) {
  if
  :: !recon[i] -> skip   /* stopped: it runs when it goes on */
  :: recon[i] && (pg[i] == PG_DOWN || hung[i]) ->
    /* Postgres cannot be asked: nothing changes, and the timer goes on. */
    rnext[i] = gap[i]
  :: else ->
    delta = dl[i];
    lp = (pg[i] == PG_PRIMARY);
    reached = 1; holders = 0; opinions = 1; against = 0; ctl = 0; cset = 0;
    jreach = 0; jquiet = 0; jprim = 0; st1 = 0; ss1 = 0; st2 = 0; ss2 = 0;
    if :: lp -> cand(i, tl[i]) :: else -> skip fi;
    /* Ask the neighbour. */
    if
    :: link[L_AB] && peerup[j] ->
      jreach = 1; reached++; opinions++;
      own_postgres_raises(j);
      jprim = (pg[j] == PG_PRIMARY && !hung[j]);
      if :: jprim -> cand(j, tl[j]) :: else -> skip fi;
      /* Our claim, verified by j asking our peer back. */
      if :: !NO_RECORDS && lp && (peerup[i] || NO_VERIFY) -> raise(j, i, tl[i]) :: else -> skip fi;
      if :: !NO_RECORDS -> st1 = rtl[j]; ss1 = rnodes[j]; cand_set(st1, ss1) :: else -> skip fi;
      if :: HOLDS(st1, ss1, i) -> holders++ :: else -> skip fi;
      /* Its opinion: a primary names itself, a standby its upstream. */
      if
      :: jprim -> jm = (1 << j)
      :: pg[j] == PG_STANDBY && !hung[j] -> jm = (1 << i)
      :: else -> jm = 0
      fi;
      if :: jm != 0 && (jm & (1 << i)) == 0 -> against++ :: else -> skip fi;
      /* The switchover shortcut's evidence: stopped (refused), or in
       * recovery; a timeout is neither. */
      if
      :: pg[j] == PG_DOWN || (pg[j] == PG_STANDBY && !hung[j]) || (SHORTCUT_ON_TIMEOUT && hung[j]) -> jquiet = 1
      :: else -> skip
      fi
    :: else -> skip
    fi;
    /* Ask the witness. */
    if
    :: link[LINK_TO_W(i)] && peerup[NW] ->
      reached++; opinions++;
      if :: !NO_RECORDS && lp && (peerup[i] || NO_VERIFY) -> raise(NW, i, tl[i]) :: else -> skip fi;
      if
      :: wc_left == 0 ->
        /* The fan-out: the witness asks both data nodes. */
        wm = 0;
        if
        :: link[L_AW] && peerup[NA] ->
          own_postgres_raises(NA);
          if :: pg[NA] == PG_PRIMARY && !hung[NA] -> wm = wm | 1;
                if :: !NO_RECORDS -> raise(NW, NA, tl[NA]) :: else -> skip fi
             :: else -> skip fi
        :: else -> skip
        fi;
        if
        :: link[L_BW] && peerup[NB] ->
          own_postgres_raises(NB);
          if :: pg[NB] == PG_PRIMARY && !hung[NB] -> wm = wm | 2;
                if :: !NO_RECORDS -> raise(NW, NB, tl[NB]) :: else -> skip fi
             :: else -> skip fi
        :: else -> skip
        fi;
        wc_masters = wm;
        wc_left = CACHE + 1   /* served for CACHE seconds: this tick and the next */
      :: else -> skip
      fi;
      if :: wc_masters != 0 && (wc_masters & (1 << i)) == 0 -> against++ :: else -> skip fi;
      /* Its record: never from a cache. */
      if :: !NO_RECORDS -> st2 = rtl[NW]; ss2 = rnodes[NW]; cand_set(st2, ss2) :: else -> skip fi;
      if :: HOLDS(st2, ss2, i) -> holders++ :: else -> skip fi
    :: else -> skip
    fi;
    /* Raise our own record from what this run saw, then read it back. */
    if
    :: !NO_RECORDS ->
      if :: lp -> raise(i, i, tl[i]) :: else -> skip fi;
      if :: jprim -> raise(i, j, tl[j]) :: else -> skip fi;
      raise_set(i, st1, ss1);
      raise_set(i, st2, ss2);
      st1 = rtl[i]; ss1 = rnodes[i];
      cand_set(st1, ss1);
      if :: HOLDS(st1, ss1, i) -> holders++ :: else -> skip fi
    :: else -> skip
    fi;
    /* Decide (rule 3), and write the verdict. */
    if
    :: lp ->
      if
      :: (cset == (1 << i) && ctl == tl[i] &&
          (NO_RECORDS -> reached : holders) * 2 > (REACHABLE_MAJORITY -> reached : 3) &&
          against * 2 <= opinions) ->
        if
        :: vhaswait[i] && vtl[i] == tl[i] && vepoch[i] == epoch[i] -> skip  /* carried */
        :: else ->
          vhaswait[i] = 1;
          if
          :: jreach && jquiet && !NO_SHORTCUT -> vwait[i] = SHORT_WAIT
          :: else -> vwait[i] = WAIT
          fi;
          if :: i == NB -> qset = 1; since_q = 0 :: else -> skip fi
        fi;
        if :: vwait[i] == 0 -> vkind[i] = V_PROD :: else -> vkind[i] = V_FENCED fi
      :: else -> vkind[i] = V_FENCED; vhaswait[i] = 0
      fi
    :: else -> vkind[i] = V_STANDBY; vhaswait[i] = 0
    fi;
    vtl[i] = tl[i]; vepoch[i] = epoch[i]; vlease[i] = LEASE - delta;
    rnext[i] = gap[i]
  fi
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

inline tick_down(x) {
  if :: x > 0 -> x-- :: else -> skip fi
}

active proctype world() {
  byte i, j, k, delta, reached, holders, opinions, against, ctl, cset, jm, wm;
  byte st1, ss1, st2, ss2;
  bit lp, jreach, jquiet, jprim;
  /* The tick's choices, made first: how late each run's t0 was (dl), when
   * its timer fires next (gap), how long each HAProxy check takes (hd),
   * and which reconciler runs first. */
  byte dl[2], gap[2], hd[2];
  bit afirst;

  atomic {
    pg[NA] = PG_PRIMARY; pg[NB] = PG_STANDBY; tl[NA] = 1; tl[NB] = 1;
    peerup[NA] = 1; peerup[NB] = 1; peerup[NW] = 1;
    recon[NA] = 1; recon[NB] = 1;
    link[L_AB] = 1; link[L_AW] = 1; link[L_BW] = 1;
    rtl[NA] = 1; rtl[NB] = 1; rtl[NW] = 1;
    rnodes[NA] = 1; rnodes[NB] = 1; rnodes[NW] = 1;
    vkind[NA] = V_PROD; vtl[NA] = 1; vlease[NA] = LEASE; vhaswait[NA] = 1;
    vkind[NB] = V_STANDBY; vtl[NB] = 1; vlease[NB] = LEASE;
    up[NA] = START_UP; up[NB] = START_UP;
    if :: rnext[NA] = 0 :: rnext[NA] = 1 fi;
    if :: rnext[NB] = 0 :: rnext[NB] = 1 fi;
    if :: hnext[NA] = 0 :: hnext[NA] = 1 :: hnext[NA] = INTER fi;
    if :: hnext[NB] = 0 :: hnext[NB] = 1 :: hnext[NB] = INTER fi
  };

  do
  :: atomic {
    /* (1) At most one event. */
    if
    :: skip
    :: !promoted && pg[NB] == PG_STANDBY && !hung[NB] ->
      pg[NB] = PG_PRIMARY; tl[NB] = 2; promoted = 1; since_promo = 0;
      planned = (pg[NA] == PG_DOWN)
    :: F_LINK && faults < MAXF ->
      faults++; healthy = 0;
      if :: LINK_MASK & 1 -> k = L_AB :: LINK_MASK & 2 -> k = L_AW :: LINK_MASK & 4 -> k = L_BW fi;
      link[k] = 1 - link[k]
    :: F_PEER && faults < MAXF ->
      /* A peer crashes or hangs, comes back, or restarts at once. A
       * restart empties its cache; its record is on disk. */
      faults++; healthy = 0;
      if :: PEER_MASK & 1 -> k = NA :: PEER_MASK & 2 -> k = NB :: PEER_MASK & 4 -> k = NW fi;
      if
      :: peerup[k] = 1 - peerup[k]
      :: peerup[k] ->
        if :: k == NW -> wc_left = 0 :: else -> skip fi;
        if :: MEMORY_RECORDS -> rtl[k] = 0; rnodes[k] = 0 :: else -> skip fi
      fi
    :: F_PGHANG && faults < MAXF ->
      faults++; healthy = 0;
      if :: NODE_MASK & 1 -> k = NA :: NODE_MASK & 2 -> k = NB fi;
      if :: pg[k] != PG_DOWN -> hung[k] = 1 - hung[k] :: else -> skip fi
    :: F_STOP && faults < MAXF && pg[NA] != PG_DOWN && !hung[NA] ->
      faults++; pg[NA] = PG_DOWN
    :: F_STOP && faults < MAXF && pg[NA] == PG_DOWN ->
      faults++; epoch[NA] = 1 - epoch[NA];
      if
      :: pg[NA] = PG_PRIMARY; planned = planned && qset   /* the zombie restarts */
      :: pg[NA] = PG_STANDBY; tl[NA] = tl[NB]              /* rewound, follows B */
      fi
    :: F_RECON && faults < MAXF ->
      /* A reconciler stops (its timer, or a run stuck), or goes on. */
      faults++; healthy = 0;
      if :: NODE_MASK & 1 -> recon[NA] = 1 - recon[NA] :: NODE_MASK & 2 -> recon[NB] = 1 - recon[NB] fi
    :: F_STRANGER && faults < MAXF ->
      /* A stranger's claim (node k, timeline i) at voter j: a voter takes
       * it only once it has asked k's peer and seen the same claim. */
      faults++;
      if :: j = NA :: j = NB :: j = NW fi;
      if :: k = NA :: k = NB fi;
      if :: i = 1 :: i = 2 :: i = 3 fi;
      if
      :: NO_VERIFY || (peerup[k] && pg[k] == PG_PRIMARY && !hung[k] && tl[k] == i) ->
        raise(j, k, i)
      :: else -> skip
      fi
    fi;

    /* t0 is taken DEADLINE before the end of gathering only in LATE_T0
     * configurations: a later t0 means a longer lease, which can only add
     * `production` answers, so 0 is the worst case for P1 and P2, and
     * DEADLINE the worst for P3 and P4. */
    dl[NA] = LATE_T0 * DEADLINE; dl[NB] = LATE_T0 * DEADLINE;
    gap[NA] = WATCHDOG; gap[NB] = WATCHDOG;
    if
    :: JITTER && rnext[NA] == 0 -> if :: skip :: gap[NA] = WATCHDOG + 1 fi
    :: else -> skip
    fi;
    if
    :: JITTER && rnext[NB] == 0 -> if :: skip :: gap[NB] = WATCHDOG + 1 fi
    :: else -> skip
    fi;
    if :: rnext[NA] == 0 && rnext[NB] == 0 -> if :: afirst = 1 :: afirst = 0 fi :: else -> skip fi;
    /* A check completes at once or late: a success within TRANSIT, a
     * failure (a timeout) at T_FAIL. */
    if :: !hpend[NA] && hnext[NA] == 0 -> if :: hd[NA] = 0 :: hd[NA] = 1 fi :: else -> skip fi;
    if :: !hpend[NB] && hnext[NB] == 0 -> if :: hd[NB] = 0 :: hd[NB] = 1 fi :: else -> skip fi

    /* (2) The reconcilers that are due, in the order chosen. */
    if
    :: afirst && rnext[NA] == 0 -> d_step { reconcile(NA, NB) }
    :: else -> skip
    fi;
    if
    :: rnext[NB] == 0 -> d_step { reconcile(NB, NA) }
    :: else -> skip
    fi;
    if
    :: !afirst && rnext[NA] == 0 -> d_step { reconcile(NA, NB) }
    :: else -> skip
    fi;
    d_step {

    /* (3) The words. */
    assert(P1 && !(PRODUCING(NA) && PRODUCING(NB)));
    if
    :: CHECK_LIVE && promoted && healthy && since_promo >= P3_BOUND -> assert(P3 && PRODUCING(NB))
    :: else -> skip
    fi;
    if
    :: CHECK_LIVE && planned && healthy && qset && since_q >= P4_BOUND -> assert(P4 && PRODUCING(NB))
    :: else -> skip
    fi;

    /* One line a tick when a trail is replayed (spin -t); pan prints nothing. */
    printf("MSC: A[pg%d tl%d hung%d peer%d rec%d v%d lease%d wait%d prod%d] B[pg%d tl%d hung%d peer%d rec%d v%d lease%d wait%d prod%d] W[peer%d] links[%d%d%d] records[A %d/%d B %d/%d W %d/%d] up[%d%d]\n",
      pg[NA], tl[NA], hung[NA], peerup[NA], recon[NA], vkind[NA], vlease[NA], vwait[NA], PRODUCING(NA),
      pg[NB], tl[NB], hung[NB], peerup[NB], recon[NB], vkind[NB], vlease[NB], vwait[NB], PRODUCING(NB),
      peerup[NW], link[L_AB], link[L_AW], link[L_BW],
      rtl[NA], rnodes[NA], rtl[NB], rnodes[NB], rtl[NW], rnodes[NW], up[NA], up[NB]);
    /* (4) HAProxy. */
    haproxy(NA);
    haproxy(NB);

    /* (5) */
    if :: CHECK_P2 -> assert(P2 && !(up[NA] && up[NB])) :: else -> skip fi

    /* (6) Time. */
    if :: going_down[NA] -> up[NA] = 0; going_down[NA] = 0 :: else -> skip fi;
    if :: going_down[NB] -> up[NB] = 0; going_down[NB] = 0 :: else -> skip fi;
    tick_down(vlease[NA]); tick_down(vlease[NB]);
    tick_down(vwait[NA]); tick_down(vwait[NB]);
    tick_down(rnext[NA]); tick_down(rnext[NB]);
    tick_down(wc_left);
    if :: hpend[NA] -> tick_down(hdelay[NA]) :: else -> tick_down(hnext[NA]) fi;
    if :: hpend[NB] -> tick_down(hdelay[NB]) :: else -> tick_down(hnext[NB]) fi;
    if :: promoted && since_promo < P3_BOUND -> since_promo++ :: else -> skip fi;
    if :: qset && since_q < P4_BOUND -> since_q++ :: else -> skip fi;
    /* Scratch values do not outlive the tick (fewer states). */
    i = 0; j = 0; k = 0; delta = 0; reached = 0; holders = 0; opinions = 0; against = 0;
    ctl = 0; cset = 0; jm = 0; wm = 0; st1 = 0; ss1 = 0; st2 = 0; ss2 = 0;
    lp = 0; jreach = 0; jquiet = 0; jprim = 0;
    dl[NA] = 0; dl[NB] = 0; gap[NA] = 0; gap[NB] = 0; hd[NA] = 0; hd[NB] = 0; afirst = 0
    }
  }
  od
}
