// Submits the page's form marked data-autosubmit once (signing out at the identity provider);
// a static file of our own, as the pages' CSP allows no inline script.
const form = document.querySelector('form[data-autosubmit]');
if (form) {
  form.submit();
}
