// Error codes of docs/protocol.md, "Errors", and the errors the SDK throws.

export const Code = {
  BAD_REQUEST: 1,
  UNAUTHENTICATED: 2,
  TOKEN_EXPIRED: 3,
  FORBIDDEN: 4,
  NOT_MEMBER: 5,
  NO_GROUP: 6,
  DISMISSED: 7,
  MUTED: 8,
  GROUP_FULL: 9,
  INVALID: 10,
  UNKNOWN_COMMAND: 11,
  FRAME_TOO_LARGE: 12,
  RATE_LIMITED: 13,
  UNAVAILABLE: 14,
  TIMEOUT: 15,
  SLOW_READER: 16,
  REPLACED: 17,
  SHUTTING_DOWN: 18,
  VERSION: 19,
  INTERNAL: 20,
  IDLE: 21,
  REDIRECT: 22,
  BANNED: 23,
  REVOKED: 24,
  BLOCKED: 25,
  TOO_LATE: 26,
} as const;

const codeNames = new Map<number, string>(Object.entries(Code).map(([k, v]) => [v, k]));

/** The codes after which the same request may succeed if sent again unchanged. */
const retryable = new Set<number>([Code.UNAVAILABLE, Code.TIMEOUT, Code.INTERNAL, Code.RATE_LIMITED, Code.SHUTTING_DOWN]);

/**
 * The codes after which the client must not reconnect by itself: the
 * device was replaced, the protocol differs, or the token is no good.
 */
const final = new Set<number>([
  Code.REPLACED,
  Code.VERSION,
  Code.BANNED,
  Code.UNAUTHENTICATED,
  Code.TOKEN_EXPIRED,
  Code.REVOKED,
]);

/** InboxdError is an Error body from the server: an error response or an ERROR frame. */
export class InboxdError extends Error {
  constructor(
    readonly code: number,
    readonly serverMessage: string,
    readonly retryAfterMs = 0,
    readonly redirect = "",
  ) {
    super(`inboxd: ${codeNames.get(code) ?? `code ${code}`}: ${serverMessage}`);
    this.name = "InboxdError";
  }

  /** The code's name, e.g. "NOT_MEMBER". */
  get codeName(): string {
    return codeNames.get(this.code) ?? `CODE_${this.code}`;
  }

  /** The same request may succeed if sent again unchanged. */
  get retryable(): boolean {
    return retryable.has(this.code);
  }

  /** The client must not reconnect after it (a new token, or nothing, helps). */
  get final(): boolean {
    return final.has(this.code);
  }
}

/**
 * ConnectionLostError: the connection ended before the response came. The
 * request may or may not have been applied.
 */
export class ConnectionLostError extends Error {
  constructor(readonly cause?: unknown) {
    super(`inboxd: connection lost${cause instanceof Error ? `: ${cause.message}` : ""}`);
    this.name = "ConnectionLostError";
  }
}

/** ClosedError: the client was closed, or stopped after a final error. */
export class ClosedError extends Error {
  constructor(readonly cause?: unknown) {
    super(`inboxd: client closed${cause instanceof Error ? `: ${cause.message}` : ""}`);
    this.name = "ClosedError";
  }
}

/** ProtocolError: the server broke the protocol (a SYNC with a gap, say). */
export class ProtocolError extends Error {
  constructor(message: string) {
    super(`inboxd: protocol: ${message}`);
    this.name = "ProtocolError";
  }
}
