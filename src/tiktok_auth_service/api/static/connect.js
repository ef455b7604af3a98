// tiktok-auth-service connect kit: connect(url) opens a connect link in a popup and settles
// with what the broker's result page posts back. The result is a hint for the page: confirm
// it on your server with GET /connect-sessions/{session_id}.

const SOURCE = "tiktok-auth-service";
const POLL_MS = 250;

export class ConnectError extends Error {
  constructor(code, session_id = null) {
    super(`connect failed: ${code}`);
    this.name = "ConnectError";
    this.code = code;
    this.session_id = session_id;
  }
}

export function connect(url) {
  const link = new URL(url, window.location.href);
  link.searchParams.set("display", "popup");
  const width = 500;
  const height = 700;
  const left = Math.round(window.screenX + (window.outerWidth - width) / 2);
  const top = Math.round(window.screenY + (window.outerHeight - height) / 2);
  // Opened now, in the caller's click: a popup opened later is refused by the browser.
  const features = `popup,width=${width},height=${height},left=${left},top=${top}`;
  const popup = window.open(link.href, "_blank", features);
  return new Promise((resolve, reject) => {
    if (!popup) {
      reject(new ConnectError("popup_blocked"));
      return;
    }
    let closedSeen = false;
    const settle = () => {
      window.removeEventListener("message", onMessage);
      clearInterval(poll);
    };
    const onMessage = (event) => {
      const data = event.data;
      if (event.origin !== link.origin || event.source !== popup || data?.source !== SOURCE) {
        return;
      }
      settle();
      const { source, status, error, ...result } = data;
      if (status === "connected") {
        resolve({ status, ...result });
      } else {
        reject(new ConnectError(error, result.session_id ?? null));
      }
    };
    // The result page posts, then closes itself: a message already on its way is given one
    // more tick to arrive before a closed popup counts as closed by the person.
    const poll = setInterval(() => {
      if (!popup.closed) return;
      if (closedSeen) {
        settle();
        reject(new ConnectError("window_closed"));
      }
      closedSeen = true;
    }, POLL_MS);
    window.addEventListener("message", onMessage);
  });
}
