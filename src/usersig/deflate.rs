//! A small zlib (RFC 1950/1951) compressor whose output is byte-identical to what the
//! official ticket generator gets from Node.js's `zlib.deflateSync`.
//!
//! Node bundles a zlib fork that finds repeated strings with a different hash than
//! canonical zlib: it reads the **four** bytes at each position as a little-endian word
//! and keeps bits 16..30 of `word * 2654435761` (a multiplicative hash of 15
//! bits), where canonical zlib rolls a hash over three bytes. A hash chain therefore
//! holds, apart from collisions, only positions that share their first four bytes:
//! three-byte matches are almost never found and the chains are shorter, so the
//! compressed bytes differ from canonical zlib although both are valid. Everything else is the classic algorithm
//! at level 6: lazy matching (`good 8, lazy 16, nice 128, chain 128`), a 32 KiB window,
//! blocks of at most 16383 symbols, and for each block the smallest of a stored, a
//! fixed-Huffman and a dynamic-Huffman encoding, built the way zlib builds them.
//!
//! The whole input is kept in memory (tickets are a few hundred bytes), so nothing
//! slides; output for inputs shorter than 64 KiB follows the reference exactly, and any
//! input yields a valid stream.

const MIN_MATCH: usize = 3;
const MAX_MATCH: usize = 258;
const WINDOW_SIZE: usize = 1 << 15;
/// The farthest back a match may start, as in zlib (`w_size - MIN_LOOKAHEAD`).
const MAX_DIST: usize = WINDOW_SIZE - (MAX_MATCH + MIN_MATCH + 1);
const HASH_BITS: u32 = 15;
const HASH_MASK: u32 = (1 << HASH_BITS) - 1;
/// Knuth's multiplicative-hash constant, 2^32 divided by the golden ratio.
const HASH_MULTIPLIER: u32 = 2_654_435_761;
/// Three-byte matches farther back than this are not worth a length/distance pair.
const TOO_FAR: usize = 4096;

// Level 6 tuning.
const GOOD_MATCH: usize = 8;
const MAX_LAZY: usize = 16;
const NICE_MATCH: usize = 128;
const MAX_CHAIN: usize = 128;

/// Symbols per block: zlib's `lit_bufsize - 1` for the default memory level.
const BLOCK_SYMBOLS: usize = (1 << 14) - 1;
/// Zero bytes after the input, so reads past the end see what the reference sees.
const PADDING: usize = MAX_MATCH + 8;

const LITERALS: usize = 256;
const END_BLOCK: usize = 256;
const L_CODES: usize = LITERALS + 1 + 29;
const D_CODES: usize = 30;
const BL_CODES: usize = 19;
const MAX_BITS: usize = 15;
const MAX_BL_BITS: usize = 7;
const REP_3_6: usize = 16;
const REPZ_3_10: usize = 17;
const REPZ_11_138: usize = 18;

const LENGTH_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LENGTH_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DIST_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];
const BL_EXTRA: [u8; BL_CODES] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 3, 7];
/// The order in which code-length code lengths are sent.
const BL_ORDER: [usize; BL_CODES] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

/// Compresses `data` into a zlib stream (level 6, 32 KiB window, default memory level).
pub fn zlib_compress(data: &[u8]) -> Vec<u8> {
    let mut out = BitWriter::with_capacity(data.len() / 2 + 64);
    // CMF: deflate, 32 KiB window; FLG: level 6 ("default"), check bits, no dictionary.
    out.bytes.extend_from_slice(&[0x78, 0x9c]);
    Deflater::new(data).run(&mut out);
    out.align();
    out.bytes.extend_from_slice(&adler32(data).to_be_bytes());
    out.bytes
}

/// Adler-32 of `data` (RFC 1950).
fn adler32(data: &[u8]) -> u32 {
    const MOD: u32 = 65521;
    let (mut a, mut b) = (1u32, 0u32);
    // 5552 is the largest run for which `b` cannot overflow before the reduction.
    for chunk in data.chunks(5552) {
        for &byte in chunk {
            a += u32::from(byte);
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

/// The hash of the four bytes at a position (bytes past the input read as zero).
fn hash4(w: &[u8]) -> usize {
    let word = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
    ((word.wrapping_mul(HASH_MULTIPLIER) >> 16) & HASH_MASK) as usize
}

/// Bits go out least significant first, as DEFLATE requires.
struct BitWriter {
    bytes: Vec<u8>,
    acc: u64,
    nbits: u32,
}

impl BitWriter {
    fn with_capacity(n: usize) -> Self {
        BitWriter {
            bytes: Vec::with_capacity(n),
            acc: 0,
            nbits: 0,
        }
    }

    fn put(&mut self, value: u32, len: u32) {
        debug_assert!(len <= 32);
        self.acc |= u64::from(value) << self.nbits;
        self.nbits += len;
        while self.nbits >= 8 {
            self.bytes.push(self.acc as u8);
            self.acc >>= 8;
            self.nbits -= 8;
        }
    }

    /// Pads with zero bits to the next byte boundary.
    fn align(&mut self) {
        if self.nbits > 0 {
            self.bytes.push(self.acc as u8);
        }
        self.acc = 0;
        self.nbits = 0;
    }
}

/// One node of a Huffman tree under construction: leaves first, then inner nodes.
#[derive(Clone, Copy, Default)]
struct Node {
    freq: u32,
    /// Code length once the tree is built.
    len: u16,
    /// Bit-reversed code, ready to send.
    code: u16,
    parent: u16,
    /// Height of the subtree, to break frequency ties the way zlib does.
    depth: u8,
}

/// The fixed parameters of one of the three trees.
struct TreeKind {
    elems: usize,
    extra: &'static [u8],
    extra_base: usize,
    max_length: usize,
}

const LIT_KIND: TreeKind = TreeKind {
    elems: L_CODES,
    extra: &LENGTH_EXTRA,
    extra_base: LITERALS + 1,
    max_length: MAX_BITS,
};
const DIST_KIND: TreeKind = TreeKind {
    elems: D_CODES,
    extra: &DIST_EXTRA,
    extra_base: 0,
    max_length: MAX_BITS,
};
const BL_KIND: TreeKind = TreeKind {
    elems: BL_CODES,
    extra: &BL_EXTRA,
    extra_base: 0,
    max_length: MAX_BL_BITS,
};

/// One queued symbol: a literal (`dist == 0`) or a match (`len - 3`, distance).
#[derive(Clone, Copy)]
struct Symbol {
    dist: u16,
    lc: u8,
}

fn length_code(len_minus_3: usize) -> usize {
    let len = len_minus_3 + MIN_MATCH;
    LENGTH_BASE
        .iter()
        .rposition(|&b| usize::from(b) <= len)
        .unwrap_or(0)
}

fn dist_code(dist: usize) -> usize {
    DIST_BASE
        .iter()
        .rposition(|&b| usize::from(b) <= dist)
        .unwrap_or(0)
}

fn reverse_bits(code: u32, len: usize) -> u16 {
    (code.reverse_bits() >> (32 - len.max(1))) as u16 & ((1u32 << len) - 1) as u16
}

/// Assigns canonical codes from code lengths (`gen_codes`).
fn assign_codes(tree: &mut [Node], max_code: usize, bl_count: &[u16; MAX_BITS + 1]) {
    let mut next = [0u32; MAX_BITS + 1];
    let mut code = 0u32;
    for bits in 1..=MAX_BITS {
        code = (code + u32::from(bl_count[bits - 1])) << 1;
        next[bits] = code;
    }
    for node in tree.iter_mut().take(max_code + 1) {
        let len = usize::from(node.len);
        if len != 0 {
            node.code = reverse_bits(next[len], len);
            next[len] += 1;
        }
    }
}

/// The fixed literal/length and distance trees of RFC 1951 §3.2.6.
fn static_trees() -> (Vec<Node>, Vec<Node>) {
    let mut lit = vec![Node::default(); L_CODES + 2];
    let mut bl_count = [0u16; MAX_BITS + 1];
    for (n, node) in lit.iter_mut().enumerate() {
        node.len = match n {
            0..=143 => 8,
            144..=255 => 9,
            256..=279 => 7,
            _ => 8,
        };
        bl_count[usize::from(node.len)] += 1;
    }
    assign_codes(&mut lit, L_CODES + 1, &bl_count);
    let dist = (0..D_CODES)
        .map(|n| Node {
            len: 5,
            code: reverse_bits(n as u32, 5),
            ..Node::default()
        })
        .collect();
    (lit, dist)
}

struct Deflater {
    /// The input followed by `PADDING` zero bytes.
    window: Vec<u8>,
    input_len: usize,
    head: Vec<u32>,
    prev: Vec<u32>,
    strstart: usize,
    lookahead: usize,
    block_start: usize,
    match_length: usize,
    match_start: usize,
    prev_length: usize,
    prev_match: usize,
    match_available: bool,
    symbols: Vec<Symbol>,
    dyn_lit: Vec<Node>,
    dyn_dist: Vec<Node>,
    bl_tree: Vec<Node>,
    static_lit: Vec<Node>,
    static_dist: Vec<Node>,
    bl_count: [u16; MAX_BITS + 1],
    heap: Vec<usize>,
    heap_len: usize,
    heap_max: usize,
    opt_len: u64,
    static_len: u64,
}

const HEAP_SIZE: usize = 2 * L_CODES + 1;

impl Deflater {
    fn new(input: &[u8]) -> Self {
        let mut window = Vec::with_capacity(input.len() + PADDING);
        window.extend_from_slice(input);
        window.resize(input.len() + PADDING, 0);
        let (static_lit, static_dist) = static_trees();
        Deflater {
            window,
            input_len: input.len(),
            head: vec![0; 1 << HASH_BITS],
            prev: vec![0; input.len() + 1],
            strstart: 0,
            lookahead: input.len(),
            block_start: 0,
            match_length: MIN_MATCH - 1,
            match_start: 0,
            prev_length: MIN_MATCH - 1,
            prev_match: 0,
            match_available: false,
            symbols: Vec::with_capacity(BLOCK_SYMBOLS.min(input.len() + 1)),
            dyn_lit: vec![Node::default(); HEAP_SIZE],
            dyn_dist: vec![Node::default(); 2 * D_CODES + 1],
            bl_tree: vec![Node::default(); 2 * BL_CODES + 1],
            static_lit,
            static_dist,
            bl_count: [0; MAX_BITS + 1],
            heap: vec![0; HEAP_SIZE],
            heap_len: 0,
            heap_max: 0,
            opt_len: 0,
            static_len: 0,
        }
    }

    /// Inserts the string at `pos` into its hash chain and returns the previous head
    /// (0 means none, so position 0 is never matched, as in zlib).
    fn insert_string(&mut self, pos: usize) -> usize {
        let h = hash4(&self.window[pos..pos + 4]);
        let old = self.head[h];
        self.prev[pos] = old;
        self.head[h] = pos as u32;
        old as usize
    }

    fn longest_match(&mut self, mut cur_match: usize) -> usize {
        let mut chain_length = MAX_CHAIN;
        let scan = self.strstart;
        let mut best_len = self.prev_length;
        let nice_match = NICE_MATCH.min(self.lookahead);
        let limit = self.strstart.saturating_sub(MAX_DIST);
        if self.prev_length >= GOOD_MATCH {
            chain_length >>= 2;
        }
        let w = &self.window;
        loop {
            let m = cur_match;
            let candidate = w[m + best_len] == w[scan + best_len]
                && w[m + best_len - 1] == w[scan + best_len - 1]
                && w[m] == w[scan]
                && w[m + 1] == w[scan + 1];
            if candidate {
                // Compare up to MAX_MATCH bytes; past the input the window holds zeros.
                let len = 2 + w[scan + 2..scan + MAX_MATCH]
                    .iter()
                    .zip(&w[m + 2..m + MAX_MATCH])
                    .take_while(|(a, b)| a == b)
                    .count();
                if len > best_len {
                    self.match_start = m;
                    best_len = len;
                    if len >= nice_match {
                        break;
                    }
                }
            }
            cur_match = self.prev[cur_match] as usize;
            chain_length -= 1;
            if cur_match <= limit || chain_length == 0 {
                break;
            }
        }
        best_len.min(self.lookahead)
    }

    /// Queues a symbol; true when the block is full.
    fn tally(&mut self, dist: usize, lc: usize) -> bool {
        self.symbols.push(Symbol {
            dist: dist as u16,
            lc: lc as u8,
        });
        if dist == 0 {
            self.dyn_lit[lc].freq += 1;
        } else {
            self.dyn_lit[length_code(lc) + LITERALS + 1].freq += 1;
            self.dyn_dist[dist_code(dist)].freq += 1;
        }
        self.symbols.len() == BLOCK_SYMBOLS
    }

    fn init_block(&mut self) {
        for n in self.dyn_lit.iter_mut().take(L_CODES) {
            n.freq = 0;
        }
        for n in self.dyn_dist.iter_mut().take(D_CODES) {
            n.freq = 0;
        }
        for n in self.bl_tree.iter_mut().take(BL_CODES) {
            n.freq = 0;
        }
        self.dyn_lit[END_BLOCK].freq = 1;
        self.opt_len = 0;
        self.static_len = 0;
        self.symbols.clear();
    }

    /// The lazy-matching loop (zlib's `deflate_slow`) over the whole input.
    fn run(mut self, out: &mut BitWriter) {
        self.init_block();
        while self.lookahead > 0 {
            let mut hash_head = 0;
            if self.lookahead >= MIN_MATCH {
                hash_head = self.insert_string(self.strstart);
            }
            self.prev_length = self.match_length;
            self.prev_match = self.match_start;
            self.match_length = MIN_MATCH - 1;
            if hash_head != 0
                && self.prev_length < MAX_LAZY
                && self.strstart - hash_head <= MAX_DIST
            {
                self.match_length = self.longest_match(hash_head);
                if self.match_length == MIN_MATCH && self.strstart - self.match_start > TOO_FAR {
                    self.match_length = MIN_MATCH - 1;
                }
            }
            if self.prev_length >= MIN_MATCH && self.match_length <= self.prev_length {
                let max_insert = self.strstart + self.lookahead - MIN_MATCH;
                let full = self.tally(
                    self.strstart - 1 - self.prev_match,
                    self.prev_length - MIN_MATCH,
                );
                self.lookahead -= self.prev_length - 1;
                for _ in 0..self.prev_length - 2 {
                    self.strstart += 1;
                    if self.strstart <= max_insert {
                        self.insert_string(self.strstart);
                    }
                }
                self.match_available = false;
                self.match_length = MIN_MATCH - 1;
                self.strstart += 1;
                if full {
                    self.flush_block(out, false);
                }
            } else if self.match_available {
                let lit = self.window[self.strstart - 1];
                if self.tally(0, usize::from(lit)) {
                    self.flush_block(out, false);
                }
                self.strstart += 1;
                self.lookahead -= 1;
            } else {
                self.match_available = true;
                self.strstart += 1;
                self.lookahead -= 1;
            }
        }
        if self.match_available {
            let lit = self.window[self.strstart - 1];
            self.tally(0, usize::from(lit));
            self.match_available = false;
        }
        self.flush_block(out, true);
        debug_assert_eq!(self.strstart, self.input_len);
    }

    /// Emits the pending symbols as the cheapest of stored, fixed or dynamic (`_tr_flush_block`).
    fn flush_block(&mut self, out: &mut BitWriter, last: bool) {
        let stored_len = self.strstart - self.block_start;
        let lit_max = self.build_tree(Tree::Lit);
        let dist_max = self.build_tree(Tree::Dist);
        let max_blindex = self.build_bl_tree(lit_max, dist_max);
        let mut opt_lenb = (self.opt_len + 3 + 7) >> 3;
        let static_lenb = (self.static_len + 3 + 7) >> 3;
        if static_lenb <= opt_lenb {
            opt_lenb = static_lenb;
        }
        let last_bit = u32::from(last);
        if stored_len as u64 + 4 <= opt_lenb && stored_len <= 0xffff {
            out.put(last_bit, 3);
            out.align();
            let len = stored_len as u16;
            out.bytes.extend_from_slice(&len.to_le_bytes());
            out.bytes.extend_from_slice(&(!len).to_le_bytes());
            out.bytes
                .extend_from_slice(&self.window[self.block_start..self.block_start + stored_len]);
        } else if static_lenb == opt_lenb {
            out.put(2 + last_bit, 3);
            let (lit, dist) = (
                std::mem::take(&mut self.static_lit),
                std::mem::take(&mut self.static_dist),
            );
            self.compress_block(out, &lit, &dist);
            self.static_lit = lit;
            self.static_dist = dist;
        } else {
            out.put(4 + last_bit, 3);
            self.send_all_trees(out, lit_max + 1, dist_max + 1, max_blindex + 1);
            let (lit, dist) = (
                std::mem::take(&mut self.dyn_lit),
                std::mem::take(&mut self.dyn_dist),
            );
            self.compress_block(out, &lit, &dist);
            self.dyn_lit = lit;
            self.dyn_dist = dist;
        }
        self.init_block();
        self.block_start = self.strstart;
    }

    fn compress_block(&self, out: &mut BitWriter, lit: &[Node], dist: &[Node]) {
        let send = |out: &mut BitWriter, tree: &[Node], c: usize| {
            out.put(u32::from(tree[c].code), u32::from(tree[c].len))
        };
        for s in &self.symbols {
            let lc = usize::from(s.lc);
            if s.dist == 0 {
                send(out, lit, lc);
            } else {
                let code = length_code(lc);
                send(out, lit, code + LITERALS + 1);
                let extra = u32::from(LENGTH_EXTRA[code]);
                if extra > 0 {
                    out.put(
                        (lc + MIN_MATCH - usize::from(LENGTH_BASE[code])) as u32,
                        extra,
                    );
                }
                let d = usize::from(s.dist);
                let code = dist_code(d);
                send(out, dist, code);
                let extra = u32::from(DIST_EXTRA[code]);
                if extra > 0 {
                    out.put((d - usize::from(DIST_BASE[code])) as u32, extra);
                }
            }
        }
        send(out, lit, END_BLOCK);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tree {
    Lit,
    Dist,
    Bl,
}

impl Deflater {
    fn tree(&self, t: Tree) -> &Vec<Node> {
        match t {
            Tree::Lit => &self.dyn_lit,
            Tree::Dist => &self.dyn_dist,
            Tree::Bl => &self.bl_tree,
        }
    }

    fn tree_mut(&mut self, t: Tree) -> &mut Vec<Node> {
        match t {
            Tree::Lit => &mut self.dyn_lit,
            Tree::Dist => &mut self.dyn_dist,
            Tree::Bl => &mut self.bl_tree,
        }
    }

    fn static_len_of(&self, t: Tree, n: usize) -> u64 {
        match t {
            Tree::Lit => u64::from(self.static_lit[n].len),
            Tree::Dist => u64::from(self.static_dist[n].len),
            Tree::Bl => 0,
        }
    }

    fn smaller(tree: &[Node], n: usize, m: usize) -> bool {
        tree[n].freq < tree[m].freq
            || (tree[n].freq == tree[m].freq && tree[n].depth <= tree[m].depth)
    }

    /// Restores the heap property from `k` down (`pqdownheap`).
    fn sift_down(&mut self, t: Tree, mut k: usize) {
        let v = self.heap[k];
        let mut j = k << 1;
        while j <= self.heap_len {
            let tree = self.tree(t);
            if j < self.heap_len && Self::smaller(tree, self.heap[j + 1], self.heap[j]) {
                j += 1;
            }
            if Self::smaller(tree, v, self.heap[j]) {
                break;
            }
            self.heap[k] = self.heap[j];
            k = j;
            j <<= 1;
        }
        self.heap[k] = v;
    }

    /// Builds a length-limited Huffman tree from the frequencies; returns the largest
    /// code with a nonzero frequency (`build_tree`).
    fn build_tree(&mut self, t: Tree) -> usize {
        let kind = match t {
            Tree::Lit => &LIT_KIND,
            Tree::Dist => &DIST_KIND,
            Tree::Bl => &BL_KIND,
        };
        let elems = kind.elems;
        self.heap_len = 0;
        self.heap_max = HEAP_SIZE;
        let mut max_code: isize = -1;
        for n in 0..elems {
            if self.tree(t)[n].freq != 0 {
                self.heap_len += 1;
                self.heap[self.heap_len] = n;
                max_code = n as isize;
                self.tree_mut(t)[n].depth = 0;
            } else {
                self.tree_mut(t)[n].len = 0;
            }
        }
        // Force at least two codes of nonzero frequency, as the format requires.
        while self.heap_len < 2 {
            let node = if max_code < 2 {
                max_code += 1;
                max_code as usize
            } else {
                0
            };
            self.heap_len += 1;
            self.heap[self.heap_len] = node;
            let tree = self.tree_mut(t);
            tree[node].freq = 1;
            tree[node].depth = 0;
            self.opt_len = self.opt_len.wrapping_sub(1);
            let sl = self.static_len_of(t, node);
            self.static_len = self.static_len.wrapping_sub(sl);
        }
        let max_code = max_code as usize;
        for n in (1..=self.heap_len / 2).rev() {
            self.sift_down(t, n);
        }
        let mut node = elems;
        loop {
            let n = self.heap[1];
            self.heap[1] = self.heap[self.heap_len];
            self.heap_len -= 1;
            self.sift_down(t, 1);
            let m = self.heap[1];
            self.heap_max -= 1;
            self.heap[self.heap_max] = n;
            self.heap_max -= 1;
            self.heap[self.heap_max] = m;
            let tree = self.tree_mut(t);
            tree[node].freq = tree[n].freq + tree[m].freq;
            tree[node].depth = tree[n].depth.max(tree[m].depth) + 1;
            tree[n].parent = node as u16;
            tree[m].parent = node as u16;
            self.heap[1] = node;
            node += 1;
            self.sift_down(t, 1);
            if self.heap_len < 2 {
                break;
            }
        }
        self.heap_max -= 1;
        self.heap[self.heap_max] = self.heap[1];
        self.gen_bitlen(t, kind, max_code);
        let bl_count = self.bl_count;
        assign_codes(self.tree_mut(t), max_code, &bl_count);
        max_code
    }

    /// Computes code lengths from the tree, limited to `max_length` (`gen_bitlen`).
    fn gen_bitlen(&mut self, t: Tree, kind: &TreeKind, max_code: usize) {
        let max_length = kind.max_length;
        self.bl_count = [0; MAX_BITS + 1];
        let root = self.heap[self.heap_max];
        self.tree_mut(t)[root].len = 0;
        let mut overflow = 0i32;
        for h in self.heap_max + 1..HEAP_SIZE {
            let n = self.heap[h];
            let tree = self.tree(t);
            let mut bits = usize::from(tree[usize::from(tree[n].parent)].len) + 1;
            if bits > max_length {
                bits = max_length;
                overflow += 1;
            }
            self.tree_mut(t)[n].len = bits as u16;
            if n > max_code {
                continue;
            }
            self.bl_count[bits] += 1;
            let xbits = if n >= kind.extra_base {
                u64::from(kind.extra[n - kind.extra_base])
            } else {
                0
            };
            let f = u64::from(self.tree(t)[n].freq);
            self.opt_len = self.opt_len.wrapping_add(f * (bits as u64 + xbits));
            if t != Tree::Bl {
                let sl = self.static_len_of(t, n);
                self.static_len = self.static_len.wrapping_add(f * (sl + xbits));
            }
        }
        if overflow == 0 {
            return;
        }
        loop {
            let mut bits = max_length - 1;
            while self.bl_count[bits] == 0 {
                bits -= 1;
            }
            self.bl_count[bits] -= 1;
            self.bl_count[bits + 1] += 2;
            self.bl_count[max_length] -= 1;
            overflow -= 2;
            if overflow <= 0 {
                break;
            }
        }
        let mut h = HEAP_SIZE;
        for bits in (1..=max_length).rev() {
            let mut n = self.bl_count[bits];
            while n != 0 {
                h -= 1;
                let m = self.heap[h];
                if m > max_code {
                    continue;
                }
                let node = &mut self.tree_mut(t)[m];
                if usize::from(node.len) != bits {
                    let delta = (bits as i64 - i64::from(node.len)) * i64::from(node.freq);
                    node.len = bits as u16;
                    self.opt_len = self.opt_len.wrapping_add(delta as u64);
                }
                n -= 1;
            }
        }
    }

    /// Counts how the code lengths of `t` will be run-length coded (`scan_tree`).
    fn scan_tree(&mut self, t: Tree, max_code: usize) {
        self.walk_lengths(t, max_code, |d, code, _extra| d.bl_tree[code].freq += 1);
    }

    /// Walks the run-length coding of the code lengths of `t`, calling `emit` with each
    /// code-length code and its extra bits (shared by `scan_tree` and `send_tree`).
    fn walk_lengths(
        &mut self,
        t: Tree,
        max_code: usize,
        mut emit: impl FnMut(&mut Self, usize, Option<(u32, u32)>),
    ) {
        let len_at = |d: &Self, n: usize| -> i32 {
            if n == max_code + 1 {
                0xffff
            } else {
                i32::from(d.tree(t)[n].len)
            }
        };
        let mut prevlen: i32 = -1;
        let mut nextlen = len_at(self, 0);
        let mut count = 0;
        let (mut max_count, mut min_count) = if nextlen == 0 { (138, 3) } else { (7, 4) };
        for n in 0..=max_code {
            let curlen = nextlen;
            nextlen = len_at(self, n + 1);
            count += 1;
            if count < max_count && curlen == nextlen {
                continue;
            } else if count < min_count {
                for _ in 0..count {
                    emit(self, curlen as usize, None);
                }
            } else if curlen != 0 {
                if curlen != prevlen {
                    emit(self, curlen as usize, None);
                    count -= 1;
                }
                emit(self, REP_3_6, Some(((count - 3) as u32, 2)));
            } else if count <= 10 {
                emit(self, REPZ_3_10, Some(((count - 3) as u32, 3)));
            } else {
                emit(self, REPZ_11_138, Some(((count - 11) as u32, 7)));
            }
            count = 0;
            prevlen = curlen;
            (max_count, min_count) = if nextlen == 0 {
                (138, 3)
            } else if curlen == nextlen {
                (6, 3)
            } else {
                (7, 4)
            };
        }
    }

    /// Builds the code-length tree; returns the index in `BL_ORDER` of the last code
    /// length to send (`build_bl_tree`).
    fn build_bl_tree(&mut self, lit_max: usize, dist_max: usize) -> usize {
        self.scan_tree(Tree::Lit, lit_max);
        self.scan_tree(Tree::Dist, dist_max);
        self.build_tree(Tree::Bl);
        let mut max_blindex = BL_CODES - 1;
        while max_blindex >= 3 && self.bl_tree[BL_ORDER[max_blindex]].len == 0 {
            max_blindex -= 1;
        }
        self.opt_len = self
            .opt_len
            .wrapping_add(3 * (max_blindex as u64 + 1) + 5 + 5 + 4);
        max_blindex
    }

    fn send_all_trees(
        &mut self,
        out: &mut BitWriter,
        lcodes: usize,
        dcodes: usize,
        blcodes: usize,
    ) {
        out.put((lcodes - 257) as u32, 5);
        out.put((dcodes - 1) as u32, 5);
        out.put((blcodes - 4) as u32, 4);
        for &i in BL_ORDER.iter().take(blcodes) {
            out.put(u32::from(self.bl_tree[i].len), 3);
        }
        for (t, max_code) in [(Tree::Lit, lcodes - 1), (Tree::Dist, dcodes - 1)] {
            self.walk_lengths(t, max_code, |d, code, extra| {
                let node = d.bl_tree[code];
                out.put(u32::from(node.code), u32::from(node.len));
                if let Some((value, bits)) = extra {
                    out.put(value, bits);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_input_is_a_fixed_block_with_only_the_end_code() {
        assert_eq!(
            zlib_compress(b""),
            [0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]
        );
    }

    #[test]
    fn adler32_of_a_known_string() {
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
    }

    #[test]
    fn three_byte_repeats_stay_literals_like_the_reference() {
        // Canonical zlib would code the second "abc" as a match; the reference does not.
        let z = zlib_compress(b"QabcXabcY");
        assert_eq!(
            z,
            [
                0x78, 0x9c, 0x0b, 0x4c, 0x4c, 0x4a, 0x8e, 0x48, 0x4c, 0x4a, 0x8e, 0x04, 0x00, 0x10,
                0x6b, 0x03, 0x4f
            ]
        );
    }

    #[test]
    fn incompressible_input_goes_into_a_stored_block() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let data: Vec<u8> = (0..2000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        let z = zlib_compress(&data);
        assert_eq!(z[2] & 0b111, 0b001, "final stored block");
        assert_eq!(z.len(), 2 + 5 + data.len() + 4);
    }
}
