from broker.runtime import main

from .certhelper import CertHelper

main(CertHelper)
