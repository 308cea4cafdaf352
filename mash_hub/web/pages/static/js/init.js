// GOV.UK Frontend's components, started from a static file of our own (no inline script).
import { initAll } from '../govuk/govuk-frontend.min.js';

initAll();
