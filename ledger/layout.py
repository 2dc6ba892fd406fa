"""The key layout of the two LevelDBs, in one place.

Every key is bytes; ``n8`` is an 8-byte big-endian number (positions, sequence
numbers, counters), so that keys sort in numeric order.

The log (precious; see :mod:`ledger.log` and :mod:`ledger.merkle`):

    e<n8 seq>                            -> canonical entry bytes
    size                                 -> n8, the number of entries
    h<level byte><n8 index>              -> Merkle hash tile (tile level, tile index; see
                                            ledger.merkle): its hashes, then its inner rows
    h\xff                                -> the tree's right edge: n8 size, the hashes of its perfect
                                            subtrees from the left, then of each suffix of them (the
                                            first is the root; see ledger.merkle.encode_edge)
    checkpoint                           -> the latest signed checkpoint note
    position                             -> the sequencer position the last appended batch reached
                                            (several nodes: where the etcd watch resumes)

State (derived from the log by the state machine; replay rebuilds it):

    s/applied, s/digest, s/genesis       -> bookkeeping: entries applied, running digest, genesis
                                            leaf (not part of the digest)
    s/position                           -> bookkeeping: the sequencer position applied (absent
                                            with the local sequencer)
    m/config                             -> the ledger's settings from its genesis
    m/member/<key id>                    -> membership record
    m/nonce/<key id>\\0<nonce>            -> n8 seq of the accepted write that used the nonce
    m/sent/<signature fingerprint>       -> n8 seq of the entry an exact signed request became
    m/result/<n8 seq>                    -> the outcome recorded for that entry
    d/<coll>/<uuid>                      -> canonical JSON document
    p/<coll>/<uuid>                      -> n8, the document's position in ledger order
    o/<coll>/<n8 pos>                    -> uuid
    c/<coll>                             -> n8, the next position
    i/<coll>/<field>/<len4><value><n8>   -> uuid, one per indexed value of the field
    v/<coll>/<uuid>/<n8 seq>             -> canonical JSON document as entry seq left it (a version:
                                            one per entry that changed the document; the newest
                                            equals d/<coll>/<uuid>)

The domain rules' own records (:mod:`ledger.uplets`, :mod:`ledger.membership`):

    m/admins                             -> n8, members holding admin that are not revoked
    m/pubkey/<base64 public key>         -> the key id that holds it
    m/ptrain/<problem>/<n8>              -> train data uuid, in registration order
    m/ptrainc/<problem>                  -> n8, their count
    m/palgo/<problem>/<n8>               -> algo uuid, in registration order
    m/palgoc/<problem>                   -> n8, their count
    m/rank/<algo>/<n8 rank>              -> learnuplet uuid of that rank
    m/algo/<algo>                        -> {"next_rank": n, "best": {"perf", "model"} | null}
    m/pbest/<problem>                    -> {"perf", "model"}: best done learnuplet of the problem
    m/claim/<uplet>                      -> key id that claimed the uplet
"""


def n8(n: int) -> bytes:
    return n.to_bytes(8, "big")


def from_n8(raw: bytes) -> int:
    return int.from_bytes(raw, "big")


# -- log ------------------------------------------------------------------------

ENTRY_PREFIX = b"e"
SIZE_KEY = b"size"
CHECKPOINT_KEY = b"checkpoint"
TILE_PREFIX = b"h"
EDGE_KEY = b"h\xff"
#: The tree's old layout, one key per node: t<level byte><n8 index>. A node rebuilds it as tiles
#: when it opens the log (ledger.log.Log.upgrade); verify still reads it.
LEGACY_TREE_PREFIX = b"t"
LOG_POSITION_KEY = b"position"


def entry_key(seq: int) -> bytes:
    return ENTRY_PREFIX + n8(seq)


def tile_key(level: int, index: int) -> bytes:
    """The key of hash tile `index` at tile level `level` (its hashes are tree level 8 * level)."""
    return TILE_PREFIX + bytes([level]) + n8(index)


def legacy_node_key(level: int, index: int) -> bytes:
    return LEGACY_TREE_PREFIX + bytes([level]) + n8(index)


# -- state: bookkeeping -------------------------------------------------------------

META_PREFIX = b"s/"
APPLIED_KEY = b"s/applied"
DIGEST_KEY = b"s/digest"
GENESIS_KEY = b"s/genesis"
POSITION_KEY = b"s/position"
LAYOUT_KEY = b"s/layout"  # n8: the state layout a state directory was built in (absent: 1)
STATE_LAYOUT = 2  # 2: with document versions (v/...)

# -- state: the state machine's records ------------------------------------------------

CONFIG_KEY = b"m/config"
MEMBER_PREFIX = b"m/member/"
SENT_PREFIX = b"m/sent/"
RESULT_PREFIX = b"m/result/"


def member_key(key_id: str) -> bytes:
    return MEMBER_PREFIX + key_id.encode()


def nonce_key(key_id: str, nonce: str) -> bytes:
    """Records that key_id used nonce in an accepted write."""
    return b"m/nonce/%s\x00%s" % (key_id.encode(), nonce.encode())


def sent_key(fingerprint: bytes) -> bytes:
    return SENT_PREFIX + fingerprint


def result_key(seq: int) -> bytes:
    return RESULT_PREFIX + n8(seq)


# -- state: documents and their indexes --------------------------------------------------


def doc_key(coll: str, uuid: str) -> bytes:
    return b"d/%s/%s" % (coll.encode(), uuid.encode())


def pos_key(coll: str, uuid: str) -> bytes:
    return b"p/%s/%s" % (coll.encode(), uuid.encode())


VERSION_PREFIX = b"v/"  # every document version key starts so


def version_prefix(coll: str, uuid: str) -> bytes:
    """The start of a document's version keys; each continues with the n8 seq that wrote it."""
    return b"v/%s/%s/" % (coll.encode(), uuid.encode())


def version_key(coll: str, uuid: str, seq: int) -> bytes:
    return version_prefix(coll, uuid) + n8(seq)


def order_prefix(coll: str) -> bytes:
    return b"o/%s/" % coll.encode()


def count_key(coll: str) -> bytes:
    return b"c/" + coll.encode()


def index_field_prefix(coll: str, field: str) -> bytes:
    return b"i/%s/%s/" % (coll.encode(), field.encode())


def index_prefix(coll: str, field: str, form: str) -> bytes:
    encoded = form.encode()
    return index_field_prefix(coll, field) + len(encoded).to_bytes(4, "big") + encoded


# -- state: the domain rules' records -------------------------------------------------------------

ADMINS_KEY = b"m/admins"


def pubkey_key(public_b64: str) -> bytes:
    return b"m/pubkey/" + public_b64.encode()


def train_prefix(problem: str) -> bytes:
    return b"m/ptrain/%s/" % problem.encode()


def train_count_key(problem: str) -> bytes:
    return b"m/ptrainc/" + problem.encode()


def algos_prefix(problem: str) -> bytes:
    return b"m/palgo/%s/" % problem.encode()


def algos_count_key(problem: str) -> bytes:
    return b"m/palgoc/" + problem.encode()


def rank_key(algo: str, rank: int) -> bytes:
    return b"m/rank/%s/%s" % (algo.encode(), n8(rank))


def algo_meta_key(algo: str) -> bytes:
    return b"m/algo/" + algo.encode()


def problem_best_key(problem: str) -> bytes:
    return b"m/pbest/" + problem.encode()


def claim_key(uplet: str) -> bytes:
    return b"m/claim/" + uplet.encode()
