from broker.actor import main

from .certhelper import CertHelper

main(CertHelper)
