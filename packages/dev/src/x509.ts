// The stand-ins' one import point for @peculiar/x509 (which needs reflect-metadata loaded first).
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';

export { x509 };
