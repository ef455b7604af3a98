// Types of /connect.js (tiktok-auth-service's connect kit).

/** What the broker's result page reported. A hint: confirm it on your server with
 * GET /connect-sessions/{session_id}. */
export type ConnectResult =
  | {
      status: "connected";
      session_id: string | null;
      advertiser_ids: string[];
      tags: Record<string, string>;
    }
  | {
      status: "connected";
      session_id: string | null;
      open_id: string;
      tags: Record<string, string>;
    };

export type ConnectErrorCode =
  | "popup_blocked"
  | "window_closed"
  | "authorization_denied"
  | "authorization_failed"
  | "forbidden"
  | "app_credentials_rejected"
  | "upstream_unavailable";

export declare class ConnectError extends Error {
  readonly name: "ConnectError";
  readonly code: ConnectErrorCode;
  /** The connect session's id, when the result page reported one. */
  readonly session_id: string | null;
}

/** Open the connect link `url` (from POST /connect-sessions) in a popup. Call it from a click
 * handler: browsers refuse popups opened later. */
export declare function connect(url: string): Promise<ConnectResult>;
