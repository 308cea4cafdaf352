// Loaded (not inline) at the start of <body>, so a strict CSP needs no nonce.
document.body.className += ' js-enabled' + ('noModule' in HTMLScriptElement.prototype ? ' govuk-frontend-supported' : '');
