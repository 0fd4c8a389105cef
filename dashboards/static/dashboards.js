// The dashboards' only script besides plotly. It is a file, not inline, so that the pages'
// Content-Security-Policy can allow scripts from the service alone ("script-src 'self'").
document.querySelectorAll("div.plot").forEach(function (div) {
  var figure = JSON.parse(document.getElementById(div.id + "-json").textContent);
  Plotly.newPlot(div, figure.data, figure.layout, {responsive: true, displaylogo: false});
});
document.querySelectorAll("[data-submit-on-change]").forEach(function (field) {
  field.addEventListener("change", function () { field.form.submit(); });
});
