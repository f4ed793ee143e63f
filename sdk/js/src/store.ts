// Where the client keeps last_seq, the seq of the last inbox entry it
// applied (docs/protocol.md, "Client sync algorithm").

/**
 * SeqStore keeps last_seq across restarts. The client calls save after the
 * app's entry listeners have finished with the entry; an app that wants
 * each entry applied exactly once across its own crashes saves the seq in
 * the same transaction as what applying the entry did, and has load read
 * it back.
 */
export interface SeqStore {
  load(): bigint | Promise<bigint>;
  save(seq: bigint): void | Promise<void>;
}

/** MemorySeqStore keeps last_seq for the life of the object: across reconnects and clients, not restarts. */
export class MemorySeqStore implements SeqStore {
  constructor(public seq = 0n) {}
  load(): bigint {
    return this.seq;
  }
  save(seq: bigint): void {
    this.seq = seq;
  }
}

/** The part of the Web Storage API that WebStorageSeqStore uses. */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

/** WebStorageSeqStore keeps last_seq under a key of a Web Storage (localStorage). */
export class WebStorageSeqStore implements SeqStore {
  constructor(
    private storage: StorageLike,
    private key: string,
  ) {}
  load(): bigint {
    const v = this.storage.getItem(this.key);
    return v && /^\d+$/.test(v) ? BigInt(v) : 0n;
  }
  save(seq: bigint): void {
    this.storage.setItem(this.key, seq.toString());
  }
}
