// Starts Swagger UI from local files (no CDN, no inline script): the OpenAPI URL comes from
// the page's data attribute.
(function () {
  var node = document.getElementById('swagger-ui');
  window.ui = SwaggerUIBundle({
    url: node.getAttribute('data-openapi-url'),
    dom_id: '#swagger-ui',
    deepLinking: true,
    layout: 'BaseLayout',
    presets: [SwaggerUIBundle.presets.apis]
  });
})();
