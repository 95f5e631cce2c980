// The page's entry: client-side routing between the four views.
import { api, clear, setCsrf, h } from "./util.js";
import { jobsView } from "./jobs.js";
import { jobView } from "./job.js";
import { composeView } from "./compose.js";
import { compareView } from "./compare.js";

const main = document.getElementById("main");
let current = null; // the view on screen: {stop()}

export function navigate(url) {
  history.pushState({}, "", url);
  route();
}
window.aifNavigate = navigate;

function route() {
  if (current && current.stop) current.stop();
  clear(main);
  const path = location.pathname;
  const params = new URLSearchParams(location.search);
  for (const a of document.querySelectorAll("header nav a")) a.classList.remove("active");
  let match;
  if ((match = path.match(/^\/jobs\/([^/]+)$/))) {
    current = jobView(main, decodeURIComponent(match[1]));
    document.getElementById("nav-jobs").classList.add("active");
  } else if (path === "/compose") {
    current = composeView(main, params);
    document.getElementById("nav-compose").classList.add("active");
  } else if (path === "/compare") {
    current = compareView(main, params);
    document.getElementById("nav-compare").classList.add("active");
  } else {
    current = jobsView(main, params);
    document.getElementById("nav-jobs").classList.add("active");
  }
}

document.addEventListener("click", (event) => {
  const a = event.target.closest("a[data-nav]");
  if (!a || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
  event.preventDefault();
  navigate(a.getAttribute("href"));
});
window.addEventListener("popstate", route);

async function start() {
  // The token came in the address once; the cookie holds it now, so drop it from view.
  const params = new URLSearchParams(location.search);
  if (params.has("token")) {
    params.delete("token");
    const rest = params.toString();
    history.replaceState({}, "", location.pathname + (rest ? "?" + rest : ""));
  }
  try {
    const { body } = await api("/api/info");
    setCsrf(body.csrf);
    const info = document.getElementById("daemon-info");
    info.textContent = `aif ${body.version || ""}`;
  } catch (error) {
    main.appendChild(h("p", { class: "problem" }, `Not connected: ${error.message}`));
  }
  route();
}
start();
