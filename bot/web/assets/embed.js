/* fixbot embed: <script src="https://HOST/embed.js" async></script> adds the
   help chat in an iframe where the tag stands. data-title and data-height on
   the tag are optional. The site must be in web.allowed_origins. */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !script.src) return;
  var frame = document.createElement("iframe");
  frame.src = new URL("./", script.src).href;
  frame.title = script.getAttribute("data-title") || "Help chat";
  frame.loading = "lazy";
  frame.referrerPolicy = "no-referrer";
  frame.style.width = "100%";
  frame.style.maxWidth = "32rem";
  frame.style.height = script.getAttribute("data-height") || "36rem";
  frame.style.border = "1px solid #d9dee7";
  frame.style.borderRadius = "12px";
  script.parentNode.insertBefore(frame, script.nextSibling);
})();
