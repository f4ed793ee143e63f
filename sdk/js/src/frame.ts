// The frame format of docs/protocol.md, "Frames": a 12-byte big-endian
// header (length, version, flags, command, request id) and a protobuf body.

/** Protocol version 1, the only one. */
export const VERSION = 1;
/** Bytes of a frame header. */
export const HEADER_SIZE = 12;
/** The largest frame before the AUTH response, header included. */
export const PRE_AUTH_MAX_FRAME = 4096;
/** The server's default max_frame, until the AUTH response tells. */
export const DEFAULT_MAX_FRAME = 262144;

export const FLAG_RESPONSE = 0x01;
export const FLAG_ERROR = 0x02;

/** Command numbers of docs/protocol.md, "Commands". */
export const Cmd = {
  AUTH: 1,
  HEARTBEAT: 2,
  SEND: 3,
  PUSH: 4,
  SYNC: 5,
  HISTORY: 6,
  CONVERSATIONS: 7,
  MARK_READ: 8,
  SEND_DIRECT: 9,
  BLOCK: 10,
  RECALL: 11,
  EDIT: 12,
  TYPING: 13,
  PRESENCE: 14,
  CREATE_GROUP: 16,
  INVITE: 17,
  JOIN: 18,
  LEAVE: 19,
  KICK: 20,
  DISMISS: 21,
  SET_ROLE: 22,
  MUTE: 23,
  SET_DND: 24,
  GROUP_INFO: 25,
  SET_GROUP_PROFILE: 26,
  READ_RECEIPTS: 27,
  ERROR: 255,
} as const;

/** Entry and message kinds of docs/protocol.md, "Messages, entries and kinds". */
export const Kind = {
  TEXT: 1,
  NOTICE: 0x8001,
  READ: 0x8002,
  DND: 0x8003,
  SYSTEM: 0x8004,
  RECALL: 0x8005,
  EDIT: 0x8006,
} as const;

export interface Frame {
  command: number;
  flags: number;
  requestId: number;
  body: Uint8Array;
}

/** FrameError: bytes that are not a frame of version 1 within the size limit. */
export class FrameError extends Error {
  constructor(message: string) {
    super(`inboxd: ${message}`);
    this.name = "FrameError";
  }
}

/** encodeFrame returns the frame's bytes, header and body. */
export function encodeFrame(command: number, flags: number, requestId: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(HEADER_SIZE + body.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, body.length);
  v.setUint8(4, VERSION);
  v.setUint8(5, flags);
  v.setUint16(6, command);
  v.setUint32(8, requestId);
  out.set(body, HEADER_SIZE);
  return out;
}

/**
 * decodeFrame reads one whole frame, as a WebSocket message carries it:
 * the header's length must match the bytes given.
 */
export function decodeFrame(data: Uint8Array, maxFrame: number): Frame {
  const r = new FrameReader(maxFrame);
  const frames = r.push(data);
  if (frames.length !== 1 || r.buffered() !== 0) {
    throw new FrameError(`a message of ${data.length} bytes is not exactly one frame`);
  }
  return frames[0];
}

/**
 * FrameReader splits a byte stream (TCP) into frames: it buffers what
 * arrives and returns every frame completed so far.
 */
export class FrameReader {
  private buf = new Uint8Array(0);

  constructor(public maxFrame: number) {}

  buffered(): number {
    return this.buf.length;
  }

  push(chunk: Uint8Array): Frame[] {
    let buf = chunk;
    if (this.buf.length > 0) {
      buf = new Uint8Array(this.buf.length + chunk.length);
      buf.set(this.buf);
      buf.set(chunk, this.buf.length);
    }
    const frames: Frame[] = [];
    let off = 0;
    while (buf.length - off >= HEADER_SIZE) {
      const v = new DataView(buf.buffer, buf.byteOffset + off, HEADER_SIZE);
      const length = v.getUint32(0);
      if (v.getUint8(4) !== VERSION) {
        throw new FrameError(`frame version ${v.getUint8(4)}, want ${VERSION}`);
      }
      if (length + HEADER_SIZE > this.maxFrame) {
        throw new FrameError(`frame of ${length + HEADER_SIZE} bytes exceeds ${this.maxFrame}`);
      }
      if (buf.length - off < HEADER_SIZE + length) {
        break;
      }
      frames.push({
        command: v.getUint16(6),
        flags: v.getUint8(5),
        requestId: v.getUint32(8),
        // A copy, so that a frame kept by the caller does not pin the buffer.
        body: buf.slice(off + HEADER_SIZE, off + HEADER_SIZE + length),
      });
      off += HEADER_SIZE + length;
    }
    this.buf = buf.slice(off);
    return frames;
  }
}
